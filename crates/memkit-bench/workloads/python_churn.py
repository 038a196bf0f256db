"""python: object churn in CPython, run with PYTHONMALLOC=malloc so every
object allocation goes to the allocator under test.

Builds and tears down dicts of records, lists of tuples, strings, small
class instances and sets, the way a data-munging script does, and checks
the results against sums computed arithmetically. Usage:
    python3 python_churn.py [rounds]
"""
import sys


class Record:
    __slots__ = ("key", "name", "tags", "score")

    def __init__(self, key, name, tags, score):
        self.key = key
        self.name = name
        self.tags = tags
        self.score = score


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def one_round(r, n):
    # Dict of records keyed by string, with a list and a str per record.
    table = {}
    for i in range(n):
        key = "k%d-%d" % (r, i)
        table[key] = Record(i, "name-" + str(i * 7), [i % 3, i % 5, i % 7], i * 0.5)
    total = 0
    for key, rec in table.items():
        total += rec.key + len(rec.tags)
    if total != n * (n - 1) // 2 + 3 * n:
        fail("round %d: record sum %d" % (r, total))
    # Drop every other record, then rebuild as tuples sorted by name.
    for i in range(0, n, 2):
        del table["k%d-%d" % (r, i)]
    rows = sorted((rec.name, rec.key) for rec in table.values())
    if len(rows) != n // 2:
        fail("round %d: %d rows left" % (r, len(rows)))
    # String building and splitting.
    text = ",".join(name for name, _ in rows)
    parts = text.split(",")
    if len(parts) != len(rows):
        fail("round %d: split gave %d parts" % (r, len(parts)))
    # Sets and a dict comprehension of small lists.
    seen = {int(p[5:]) % 1000 for p in parts}
    groups = {}
    for _, k in rows:
        groups.setdefault(k % 97, []).append(k)
    count = sum(len(v) for v in groups.values())
    if count != len(rows) or len(seen) > 1000:
        fail("round %d: grouping lost items" % r)
    return len(rows)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    n = 20000
    kept = 0
    for r in range(rounds):
        kept += one_round(r, n)
    if kept != rounds * (n // 2):
        fail("kept %d" % kept)
    print("rows %d" % kept)
    print("ok")


main()
