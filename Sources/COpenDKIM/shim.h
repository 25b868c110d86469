#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <dkim.h>
