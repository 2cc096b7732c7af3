"""Settings for every test: no timed assertions, not even Hypothesis's per-example deadline."""

from hypothesis import settings

# A loaded 2-core machine (CI, or several test beds at once) makes examples slow; speed is
# measured in bench/, never asserted here.
settings.register_profile("cluster-bootstrap", deadline=None)
settings.load_profile("cluster-bootstrap")
