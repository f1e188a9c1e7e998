-- Placeholder: this number belongs to another branch of issue 8, whose
-- migration replaces this file when the branches merge.
SELECT 1
