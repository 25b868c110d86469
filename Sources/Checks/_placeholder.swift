public enum _PlaceholderChecks {}
