"""Redis URL forms: the one parse (jobs_core.redis_url), its errors (masked), the kombu
broker form of a Sentinel URL, and masking of Sentinel URLs."""

from __future__ import annotations

import ssl
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core.errors import ProfileError
from jobs_core.profile import Profile
from jobs_core.redis_url import InvalidRedisUrl, parse_redis_url
from jobs_core.urls import mask_secrets_in, mask_url
from worker.config import celery_settings, sentinel_broker

PW = "s3cr/et@x"
SPW = "sent:pw"
URL = (
    f"redis+sentinel://:{quote(PW, safe='')}@h1,h2:26380,[::1]:26381/mymaster/3"
    f"?sentinel_password={quote(SPW, safe='')}"
)


def test_sentinel_url_parts() -> None:
    t = parse_redis_url(URL)
    assert t.sentinel is not None
    assert t.sentinel.hosts == (("h1", 26379), ("h2", 26380), ("::1", 26381))
    assert t.sentinel.master_name == "mymaster"
    assert (t.db, t.username, t.password, t.tls) == (3, None, PW, False)
    assert (t.sentinel.username, t.sentinel.password) == (None, SPW)
    assert t.server_kwargs() == {"db": 3, "password": PW}
    assert t.sentinel_kwargs() == {"password": SPW}
    assert PW not in repr(t) and SPW not in repr(t)
    assert sorted(t.secrets()) == sorted([PW, SPW])


def test_alias_user_tls_and_defaults() -> None:
    t = parse_redis_url("sentinel://app:pw@h/m")
    assert t.sentinel is not None and t.sentinel.hosts == (("h", 26379),)
    assert (t.username, t.password, t.db, t.tls) == ("app", "pw", 0, False)
    t = parse_redis_url(
        "rediss+sentinel://h/m?ssl_ca_certs=/ca.pem&ssl_cert_reqs=CERT_NONE&sentinel_username=s"
    )
    assert t.tls and t.password is None
    assert t.server_kwargs() == {
        "db": 0,
        "ssl": True,
        "ssl_cert_reqs": "none",
        "ssl_ca_certs": "/ca.pem",
    }
    assert t.sentinel_kwargs() == {
        "username": "s",
        "ssl": True,
        "ssl_cert_reqs": "none",
        "ssl_ca_certs": "/ca.pem",
    }


def test_direct_urls_keep_their_url() -> None:
    t = parse_redis_url("rediss://:pw@host:6380/2?ssl_cert_reqs=none")
    assert t.sentinel is None and t.tls and t.db == 2 and t.password == "pw"
    assert t.url == "rediss://:pw@host:6380/2?ssl_cert_reqs=none"
    assert parse_redis_url("unix:///run/redis.sock").sentinel is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://:pw@h1:26379", "must name the master"),
        ("redis+sentinel://:pw@h1:26379/", "must name the master"),
        ("redis+sentinel://:pw@h1:0/m", "port must be a number"),
        ("redis+sentinel://:pw@h1:x/m", "port must be a number"),
        ("redis+sentinel://:pw@h1,,h2/m", "host:port, separated by commas"),
        ("redis+sentinel://:pw@:26379/m", "no host name"),
        ("redis+sentinel://:pw@[::1/m", "not closed"),
        ("redis+sentinel://:pw@h/m/x", "must be a number"),
        ("redis+sentinel://pw@h/m", ":password@"),
        ("redis+sentinel://:pw@h/m?password=x", "unknown option 'password'"),
        ("redis+sentinel://:pw@h/m?ssl_ca_certs=/x", "need rediss+sentinel"),
        ("rediss+sentinel://:pw@h/m?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
        ("redis+sentinel://:p#w@h/m", "percent-encoded"),
        ("http://:pw@h/m", "the scheme must be one of"),
    ],
)
def test_bad_urls_name_the_problem_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(InvalidRedisUrl) as err:
        parse_redis_url(url)
    text = str(err.value)
    assert problem in text
    assert "pw@" not in text and "p#w" not in text
    assert text.count("write ") == 1


def test_profile_refuses_a_bad_sentinel_url_naming_the_key() -> None:
    with pytest.raises(ProfileError) as err:
        Profile.from_dict({"redis_url": "redis+sentinel://:hunter2@h1:26379"})
    assert "redis_url" in str(err.value) and "hunter2" not in str(err.value)
    assert "master" in str(err.value)
    assert Profile.from_dict({"redis_url": URL}).redis_url == URL


def test_masking_sentinel_urls() -> None:
    masked = mask_url(URL)
    assert PW not in masked and quote(PW, safe="") not in masked
    assert quote(SPW, safe="") not in masked and "sentinel_password=***" in masked
    assert mask_url("sentinel://secret@h/m") == "sentinel://***@h/m"
    text = f"error talking to {SPW} with {PW}"
    raw = f"redis+sentinel://:{PW.replace('/', '')}@h/m?sentinel_password={SPW}"
    assert SPW not in mask_secrets_in(text, raw)


def test_kombu_form_of_a_sentinel_url() -> None:
    url, options, use_ssl = sentinel_broker(parse_redis_url(URL))
    enc = quote(PW, safe="")
    assert url == (
        f"sentinel://:{enc}@h1:26379/3;sentinel://:{enc}@h2:26380/3;sentinel://:{enc}@[::1]:26381/3"
    )
    assert options["master_name"] == "mymaster"
    assert options["sentinel_kwargs"]["password"] == SPW
    assert options["sentinel_kwargs"]["socket_timeout"] > 0
    assert use_ssl is None
    _, options, use_ssl = sentinel_broker(
        parse_redis_url("rediss+sentinel://h/m?ssl_ca_certs=/ca.pem")
    )
    assert use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert options["sentinel_kwargs"]["ssl"] is True


def test_celery_settings_for_a_sentinel_url_keep_the_visibility_timeout() -> None:
    from jobs_core.registry import JobRegistry

    settings = celery_settings(URL, JobRegistry([], []))
    assert settings["broker_url"].startswith("sentinel://")
    transport = settings["broker_transport_options"]
    assert transport["master_name"] == "mymaster"
    assert transport["visibility_timeout"] >= 30
    assert "broker_use_ssl" not in settings


def test_kombu_reads_the_login_and_db_back() -> None:
    from kombu import Connection

    url, options, _ = sentinel_broker(parse_redis_url(URL))
    conn = Connection(url, transport_options=options)
    assert conn.transport_cls == "sentinel"
    assert (conn.password, conn.virtual_host, conn.hostname) == (PW, "3", "h1")
    assert len(conn.alt) == 3


_hosts = st.lists(
    st.tuples(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535)),
    min_size=1,
    max_size=4,
)


@given(
    hosts=_hosts,
    master=st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
    db=st.integers(0, 15),
    password=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
)
def test_any_sentinel_url_round_trips(
    hosts: list[tuple[str, int]], master: str, db: int, password: str
) -> None:
    hostlist = ",".join(f"{h}:{p}" for h, p in hosts)
    url = f"redis+sentinel://:{quote(password, safe='')}@{hostlist}/{master}/{db}"
    t = parse_redis_url(url)
    assert t.sentinel is not None
    assert (t.sentinel.hosts, t.sentinel.master_name, t.db) == (tuple(hosts), master, db)
    assert t.password == password
    assert mask_url(url) == f"redis+sentinel://:***@{hostlist}/{master}/{db}"
