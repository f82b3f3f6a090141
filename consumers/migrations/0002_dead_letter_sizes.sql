-- Dead letters of inputs larger than a letter may carry (dead_letter v2) keep only their first bytes:
-- payload_bytes is what the letter carries, input_bytes the whole input, payload_cut whether they differ.
-- Rows landed before this migration carried their input whole, which the defaults say.
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS input_bytes UInt64 DEFAULT payload_bytes AFTER payload_bytes;
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS payload_cut Bool DEFAULT false AFTER input_bytes;
