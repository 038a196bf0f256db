-- sqlite: bulk insert into a table with an index, then queries that check
-- the data. The harness feeds this to the sqlite3 shell on stdin, after a
-- first line `.parameter set @rows N`. Prints `ok` when every check passes.
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -65536;
CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB);
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < @rows)
INSERT INTO item (id, name, grp, payload)
SELECT i, printf('item-%08d-%x', (i * 2654435761) % 4294967296, i), i % 1000, zeroblob(16 + i % 200)
FROM seq;
CREATE INDEX item_name ON item (name);
CREATE INDEX item_grp ON item (grp, id);
UPDATE item SET grp = grp + 1000 WHERE id % 10 = 0;
DELETE FROM item WHERE id % 7 = 0;
SELECT CASE
    WHEN (SELECT count(*) FROM item) = @rows - @rows / 7
     AND (SELECT count(*) FROM item WHERE grp >= 1000) = @rows / 10 - @rows / 70
     AND (SELECT count(DISTINCT name) FROM item) = @rows - @rows / 7
     AND (SELECT sum(length(payload)) FROM item) =
         (WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < @rows)
          SELECT sum(16 + i % 200) FROM seq WHERE i % 7 != 0)
     AND (SELECT count(*) FROM item INDEXED BY item_grp WHERE grp BETWEEN 10 AND 19) =
         (SELECT count(*) FROM item NOT INDEXED WHERE grp BETWEEN 10 AND 19)
    THEN 'checks passed' ELSE 'checks FAILED' END;
PRAGMA integrity_check;
