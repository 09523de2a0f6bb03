"""core.service.auth.TokenCache: a project token found valid is trusted for `ttl` seconds, no
longer."""

from core.service.auth import Principal, TokenCache, hash_token

ADMIN_TOKEN = "admin-secret"
PROJECT = Principal(project_id="p1", admin=False)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_token_is_known_until_its_time_is_up() -> None:
    clock = Clock()
    cache = TokenCache(5.0, clock=clock)
    cache.remember("mlft_a", PROJECT)

    clock.now += 4.9
    assert cache.lookup("mlft_a", ADMIN_TOKEN) == PROJECT
    clock.now += 0.2
    assert cache.lookup("mlft_a", ADMIN_TOKEN) is None


def test_a_forgotten_token_must_be_looked_up_again() -> None:
    cache = TokenCache(5.0)
    cache.remember("mlft_a", PROJECT)

    cache.forget(hash_token("mlft_a"))

    assert cache.lookup("mlft_a", ADMIN_TOKEN) is None


def test_unknown_missing_and_admin_tokens() -> None:
    cache = TokenCache(5.0)

    assert cache.lookup("mlft_never_seen", ADMIN_TOKEN) is None
    assert cache.lookup(None, ADMIN_TOKEN) is None
    assert cache.lookup("", ADMIN_TOKEN) is None
    assert cache.lookup(ADMIN_TOKEN, ADMIN_TOKEN) == Principal(project_id=None, admin=True)


def test_a_zero_time_caches_nothing() -> None:
    cache = TokenCache(0.0)
    cache.remember("mlft_a", PROJECT)
    assert cache.lookup("mlft_a", ADMIN_TOKEN) is None


def test_the_cache_stays_bounded_by_its_entry_count() -> None:
    cache = TokenCache(60.0, max_entries=3)
    for index in range(10):
        cache.remember(f"mlft_{index}", PROJECT)

    known = [index for index in range(10) if cache.lookup(f"mlft_{index}", ADMIN_TOKEN)]
    assert len(known) <= 3 and 9 in known
