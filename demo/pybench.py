"""A small pure-Python benchmark for `scripts/cpython.sh`: JSON round-trips,
regular expressions, dict and list work, string building and a recursive
function, in rounds. Prints deterministic results on stdout and the rate on
stderr (`rounds/s: N`)."""

import json
import re
import sys
import time

WORD = re.compile(r"([a-z]+)-(\d+)")


def make_record(i):
    return {
        "id": i,
        "name": f"user-{i}",
        "tags": [f"t{j}" for j in range(i % 7)],
        "score": (i * 37) % 101 / 7.0,
        "nested": {"a": i, "b": [i, i + 1, {"c": str(i)}]},
    }


def json_round_trip(n):
    records = [make_record(i) for i in range(n)]
    text = json.dumps(records, sort_keys=True)
    back = json.loads(text)
    return len(text) + sum(r["id"] for r in back)


def regex_scan(n):
    text = " ".join(f"item-{i} other{i} key-{i * 3}" for i in range(n))
    total = 0
    for m in WORD.finditer(text):
        total += int(m.group(2)) + len(m.group(1))
    return total + len(re.sub(r"\d+", "#", text))


def dict_and_lists(n):
    counts = {}
    for i in range(n):
        key = f"k{i % 97}"
        counts[key] = counts.get(key, 0) + i
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    squares = [x * x for x in range(n) if x % 3]
    return ordered[0][1] + sum(squares) % 1000003


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Node:
    __slots__ = ("value", "children")

    def __init__(self, value):
        self.value = value
        self.children = []


def build_tree(depth, fanout):
    node = Node(depth)
    if depth:
        node.children = [build_tree(depth - 1, fanout) for _ in range(fanout)]
    return node


def tree_sum(node):
    return node.value + sum(tree_sum(c) for c in node.children)


def one_round(i):
    return (
        json_round_trip(200)
        + regex_scan(300)
        + dict_and_lists(2000)
        + fib(16)
        + tree_sum(build_tree(5, 4))
        + len("".join(str(x) for x in range(i % 50, 500)))
    )


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    start = time.perf_counter()
    checksum = 0
    for i in range(rounds):
        checksum = (checksum * 31 + one_round(i)) % (1 << 61)
    elapsed = time.perf_counter() - start
    print(f"rounds {rounds}, checksum {checksum}")
    print(f"rounds/s: {rounds / elapsed:.1f} ({elapsed:.2f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
