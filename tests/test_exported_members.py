import canary_stats
import canary_stats.stats


def test_public_api_is_explicit() -> None:
    for module in (canary_stats, canary_stats.stats):
        public = sorted(n for n in dir(module) if not n.startswith("_"))
        exported = set(module.__all__)
        submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
        assert sorted(module.__all__) == list(module.__all__), "keep __all__ sorted"
        assert set(public) - submodules - exported == set()
