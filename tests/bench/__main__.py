"""`make bench`: every benchmark, each reporting ratios against baselines measured in the same run."""
from tests.bench import core_bench

if __name__ == "__main__":
    core_bench.run()
