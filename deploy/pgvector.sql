-- Moves a Convo database migrated without pgvector onto pgvector, once pgvector is installed on the
-- server: converts the float32 blobs of chunk_vectors into vector(384) and builds the HNSW index,
-- exactly as migration 0003 makes them when pgvector is there. Stop Convo first (API processes and
-- workers), run as a role that may CREATE EXTENSION, then start Convo again: each process checks the
-- column's type at start-up and logs "retrieval: pgvector HNSW".
--
--   psql postgresql://convo@db/convo -v ON_ERROR_STOP=1 -f deploy/pgvector.sql
--
-- One transaction: on any error nothing changes. It reads every vector in SQL, so expect about a
-- minute per 100,000 chunks.

BEGIN;

CREATE EXTENSION IF NOT EXISTS vector;

-- The blobs are numpy float32 in little-endian order (what Convo writes on x86 and ARM); unit-length
-- embeddings have no infinities or NaNs, so normal and subnormal numbers are all there is to decode
-- (a negative zero comes out as zero, which no similarity can tell apart).
CREATE FUNCTION pg_temp.convo_float32s(blob bytea) RETURNS real[] LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT array_agg(
               (CASE WHEN (w >> 31) = 1 THEN -1 ELSE 1 END)
               * (CASE WHEN (w >> 23) & 255 = 0 THEN (w & 8388607) * 2.0 ^ (-149)
                       ELSE (1 + (w & 8388607) / 8388608.0) * 2.0 ^ (((w >> 23) & 255) - 127) END)
               ORDER BY i)::real[]
    FROM (SELECT i, get_byte(blob, 4 * i)::bigint
                    | (get_byte(blob, 4 * i + 1)::bigint << 8)
                    | (get_byte(blob, 4 * i + 2)::bigint << 16)
                    | (get_byte(blob, 4 * i + 3)::bigint << 24) AS w
          FROM generate_series(0, length(blob) / 4 - 1) AS i) AS words
$$;

ALTER TABLE chunk_vectors ALTER COLUMN embedding TYPE vector(384)
    USING pg_temp.convo_float32s(embedding)::vector(384);
CREATE INDEX ix_chunk_vectors_hnsw ON chunk_vectors USING hnsw (embedding vector_cosine_ops);
-- pgvector does not count a user's rows on every query: the chunk id the fallback's index carried for
-- that is no longer needed.
DROP INDEX ix_chunk_vectors_user;
CREATE INDEX ix_chunk_vectors_user ON chunk_vectors (user_id, attachment_id);

COMMIT;
