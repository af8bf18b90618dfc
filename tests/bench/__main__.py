"""`make bench`: every benchmark, each reporting ratios or targets measured in the same run."""
from tests.bench import core_bench, export_bench, gui_bench, ray_bench, regionmap_bench

if __name__ == "__main__":
    core_bench.run()
    gui_bench.run()
    export_bench.run()
    regionmap_bench.run()
    ray_bench.run()
