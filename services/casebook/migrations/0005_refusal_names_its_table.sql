-- An append-only table's trigger names the table it guards (the message said
-- "casebook.decisions" whichever table refused the change).
CREATE OR REPLACE FUNCTION casebook.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
