-- MailGate's shared decision-log sink: one append-only table that every gateway writes its
-- own hash chain into, and the roles that may write and read it.
--
--   psql -v ON_ERROR_STOP=1 -d mailgate -f contrib/postgres/decision-log.sql
--   psql -d mailgate -c "ALTER ROLE mailgate_writer PASSWORD 'a long secret'"
--
-- Run it as the database's owner (not as a gateway). Safe to run again. The gateways connect
-- as mailgate_writer (log.postgres: postgres://mailgate_writer:SECRET@db/mailgate), which may
-- INSERT rows and ask where its own chain ends, and nothing else: no SELECT, UPDATE, DELETE
-- or TRUNCATE. Auditors and `mailgate log query|why|report|verify --postgres` connect as
-- mailgate_reader (SELECT only). Even the table's owner cannot change or delete a row while
-- the triggers below are enabled; retention is a deliberate act:
--   ALTER TABLE mailgate_decisions DISABLE TRIGGER mailgate_decisions_append_only;
--   DELETE FROM mailgate_decisions WHERE ts < now() - interval '400 days';
--   ALTER TABLE mailgate_decisions ENABLE TRIGGER mailgate_decisions_append_only;

BEGIN;

CREATE TABLE IF NOT EXISTS mailgate_decisions (
    gateway     TEXT        NOT NULL,          -- log.gateway: one chain per gateway
    seq         BIGINT      NOT NULL,          -- the record's "seq" in that gateway's log
    ts          TIMESTAMPTZ NOT NULL,          -- its "ts"
    session     TEXT,                          -- its "session", if any
    event       TEXT        NOT NULL,          -- its "event"
    line        TEXT        NOT NULL,          -- the record exactly as in the file
    hash        TEXT        NOT NULL,          -- SHA-256 (hex) of line: the next record's "prev"
    inserted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX IF NOT EXISTS mailgate_decisions_ts ON mailgate_decisions (ts);
CREATE INDEX IF NOT EXISTS mailgate_decisions_session ON mailgate_decisions (session);

CREATE OR REPLACE FUNCTION mailgate_decisions_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mailgate_decisions is append-only (% refused)', TG_OP;
END $$;

DROP TRIGGER IF EXISTS mailgate_decisions_append_only ON mailgate_decisions;
CREATE TRIGGER mailgate_decisions_append_only BEFORE UPDATE OR DELETE ON mailgate_decisions
    FOR EACH ROW EXECUTE FUNCTION mailgate_decisions_refuse();
DROP TRIGGER IF EXISTS mailgate_decisions_no_truncate ON mailgate_decisions;
CREATE TRIGGER mailgate_decisions_no_truncate BEFORE TRUNCATE ON mailgate_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION mailgate_decisions_refuse();

-- Where a gateway's chain ends in the sink: what the gateway ships after. SECURITY DEFINER,
-- so the writer learns this without being able to read the table.
CREATE OR REPLACE FUNCTION mailgate_decisions_last(gw TEXT, OUT seq BIGINT, OUT hash TEXT)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT d.seq, d.hash FROM public.mailgate_decisions d WHERE d.gateway = gw ORDER BY d.seq DESC LIMIT 1
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mailgate_writer') THEN
        CREATE ROLE mailgate_writer LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mailgate_reader') THEN
        CREATE ROLE mailgate_reader LOGIN;
    END IF;
END $$;

REVOKE ALL ON mailgate_decisions FROM PUBLIC, mailgate_writer, mailgate_reader;
GRANT INSERT ON mailgate_decisions TO mailgate_writer;
GRANT SELECT ON mailgate_decisions TO mailgate_reader;
REVOKE ALL ON FUNCTION mailgate_decisions_last(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mailgate_decisions_last(TEXT) TO mailgate_writer, mailgate_reader;

COMMIT;

-- Every gateway connects as mailgate_writer, so one gateway could insert rows under another's
-- name (it cannot change or delete any). Where the gateways do not trust one another, give
-- each its own role and let row-level security hold it to its own chain, e.g. for mx1:
--   CREATE ROLE mailgate_mx1 LOGIN IN ROLE mailgate_writer;
--   ALTER TABLE mailgate_decisions ENABLE ROW LEVEL SECURITY;
--   CREATE POLICY mailgate_mx1_own ON mailgate_decisions FOR INSERT TO mailgate_mx1 WITH CHECK (gateway = 'mx1');
--   CREATE POLICY mailgate_readers ON mailgate_decisions FOR SELECT TO mailgate_reader USING (true);
