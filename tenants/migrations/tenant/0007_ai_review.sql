-- AI-assist review: a reviewer who approves an ai step's draft may send an
-- edited answer instead (POST .../tasks/{id}/decision {"output": ...});
-- the engine goes on with it and records the outcome "edited".
ALTER TABLE tasks ADD COLUMN output jsonb NULL CHECK (output IS NULL OR jsonb_typeof(output) = 'object');
