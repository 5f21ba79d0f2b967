"""zot's defaults and interactions, as zot's pkg/cli/server/root.go applies them, and what
ocistore refuses by name (with the reason) instead of ignoring."""

from __future__ import annotations

from typing import Any

import pytest

from ocistore.config import (
    ConfigError,
    DynamoDBCacheConfig,
    EmbeddedCacheConfig,
    RedisCacheConfig,
    Retention,
    parse_config,
)

S3 = {"name": "s3", "bucket": "b", "region": "us-east-1"}


def storage(**keys: Any) -> Any:
    return parse_config({"storage": {"rootDirectory": "/r", **keys}}).storage


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


def test_subpath_stores_start_from_zero_values_not_the_default_store_s() -> None:
    s = storage(subPaths={"/a": {"rootDirectory": "/a"}, "/b": {"rootDirectory": "/b", "gc": True}})
    assert (s.dedupe, s.gc, s.gc_delay, s.gc_interval) == (True, True, 3600, 3600)
    a, b = s.sub_paths["/a"], s.sub_paths["/b"]
    assert (a.dedupe, a.gc, a.commit) == (False, False, False)
    # gc on: gcDelay and gcInterval get zot's hour, retention's delay zot's DefaultRetentionDelay (24h).
    assert (b.gc, b.gc_delay, b.gc_interval, b.retention.delay) == (True, 3600, 3600, 86400)
    assert "gcDelay" in refused({"storage": {"rootDirectory": "/r", "subPaths": {
        "/c": {"rootDirectory": "/c", "gc": True, "gcDelay": "0s"}}}})


def test_routes_are_matched_as_zot_lowercases_them() -> None:
    assert set(storage(subPaths={"/Infra": {"rootDirectory": "/i"}}).sub_paths) == {"/infra"}


def test_remote_cache_defaults_to_true_with_a_storage_driver_and_dedupe() -> None:
    s = parse_config({"storage": {"storageDriver": S3, "cacheDriver": {"name": "dynamodb",
                                                                          "cacheTablename": "t"}}}).storage
    assert s.remote_cache is True and isinstance(s.cache_driver, DynamoDBCacheConfig)
    # zot's s3 examples leave the key out: without a cacheDriver that is zot's own error too.
    assert "remoteCache" in refused({"storage": {"rootDirectory": "/r", "storageDriver": S3}})
    assert storage(storageDriver=S3, remoteCache=False).remote_cache is False
    assert storage(storageDriver=S3, dedupe=False).remote_cache is False
    assert storage().remote_cache is False


def test_a_remote_cache_driver_named_while_remote_cache_is_false_gives_the_embedded_index() -> None:
    s = storage(cacheDriver={"name": "redis", "url": "redis://h:6379/0"})
    assert isinstance(s.cache_driver, EmbeddedCacheConfig)


def test_all_remote_needs_no_root_directory_but_local_disk_does() -> None:
    s = parse_config({"storage": {"storageDriver": S3, "remoteCache": True,
                                  "cacheDriver": {"name": "dynamodb", "cacheTablename": "t"}}}).storage
    assert s.root_directory is None
    assert "storage.rootDirectory" in refused({"storage": {"dedupe": False}})
    # The embedded holder index needs a directory of its own.
    assert "rootDirectory" in refused({"storage": {"storageDriver": S3, "remoteCache": False}})


def test_an_s3_endpoint_means_path_style_unless_said_otherwise() -> None:
    endpoint = {**S3, "regionendpoint": "http://127.0.0.1:9000"}
    assert storage(storageDriver=endpoint, remoteCache=False).storage_driver.forcepathstyle is True
    s = storage(storageDriver={**endpoint, "forcepathstyle": False}, remoteCache=False)
    assert s.storage_driver.forcepathstyle is False
    assert not storage(storageDriver=S3, remoteCache=False).storage_driver.path_style


@pytest.mark.parametrize(("name", "reason"), [("gcs", "gcs"), ("azure", "azure"), ("inmemory", "restart"),
                                              ("filesystem", "rootDirectory"), ("swift", "unknown")])
def test_other_storage_drivers_are_refused_by_name_with_the_reason(name: str, reason: str) -> None:
    message = refused({"storage": {"rootDirectory": "/r", "storageDriver": {"name": name}}})
    assert "storage.storageDriver.name" in message and reason in message


def test_gc_off_keeps_its_keys_ignored_and_retention_without_delay() -> None:
    s = storage(gc=False, gcDelay="5m")
    assert s.gc is False and s.retention.delay == 0
    assert storage(gcDelay="2h").retention.delay == 7200
    assert storage(gcDelay="2h", retention={"delay": "30m"}).retention.delay == 1800


def test_gc_time_window_is_a_daily_utc_window() -> None:
    assert storage(gcTimeWindow="22:00-06:00").gc_time_window == (22 * 60, 6 * 60)
    assert storage(gcTimeWindow="").gc_time_window is None
    for bad in ("22:00", "25:00-01:00", "10:00-10:00", "10-12"):
        assert "storage.gcTimeWindow" in refused({"storage": {"rootDirectory": "/r", "gcTimeWindow": bad}})


def test_retention_policies_take_zots_keys_and_defaults() -> None:
    r = Retention.model_validate({"dryRun": True, "delay": "24h", "policies": [
        {"repositories": ["infra/*", "**/prod"], "deleteReferrers": True,
         "keepTags": [{"patterns": ["^v[0-9]+"], "pulledWithin": "720h", "mostRecentlyPushedCount": 5}],
         "keepUntagged": {"pushedWithin": "24h"}},
        {"repositories": ["**"]}]}, context={"file": True})
    assert r.dry_run is True and r.delay == 86400
    first, second = r.policies
    assert first.delete_referrers and first.delete_untagged  # deleteUntagged: true unless given
    assert first.keep_tags[0].pulled_within == 720 * 3600 and first.keep_tags[0].most_recently_pushed_count == 5
    assert first.keep_untagged is not None and first.keep_untagged.pushed_within == 86400
    assert second.keep_tags == [] and not second.delete_referrers
    bad = {"rootDirectory": "/r", "retention": {"policies": [{"repositories": ["a"], "keepTags": [
        {"patterns": ["v[0-9"]}]}]}}
    assert "storage.retention.policies.0.keepTags.0.patterns" in refused({"storage": bad})
    assert "repositories" in refused({"storage": {"rootDirectory": "/r", "retention": {"policies": [
        {"repositories": ["a/{b"]}]}}})


def test_retention_policies_take_zots_defaults_and_bad_globs_or_patterns_fail() -> None:
    s = storage(gcDelay="2h", retention={"policies": [{"repositories": ["**"]},
                                                      {"repositories": ["a/*"], "deleteUntagged": False}]})
    assert s.retention.delay == 7200, "without a delay of its own, retention judges manifests by gcDelay"
    assert [p.delete_untagged for p in s.retention.policies] == [True, False]
    assert [p.delete_referrers for p in s.retention.policies] == [False, False]
    assert storage(retention={"dryRun": False, "delay": "1h"}).retention.delay == 3600
    assert "no valid glob" in refused({"storage": {"rootDirectory": "/r", "retention": {
        "policies": [{"repositories": ["a/[b"]}]}}})
    assert "regular expression" in refused({"storage": {"rootDirectory": "/r", "retention": {
        "policies": [{"repositories": ["**"], "keepTags": [{"patterns": ["v(1"]}]}]}}})


def test_redis_cache_go_style_url_options_are_translated_or_refused() -> None:
    s = storage(remoteCache=True, cacheDriver={
        "name": "redis", "url": "redis://u:p@h:6379/2?dial_timeout=3&read_timeout=6s&pool_size=10&pool_fifo=true"})
    assert isinstance(s.cache_driver, RedisCacheConfig)
    assert s.cache_driver.target == "redis://u:p@h:6379/2?socket_connect_timeout=3&socket_timeout=6&max_connections=10"
    message = refused({"storage": {"rootDirectory": "/r", "remoteCache": True, "cacheDriver": {
        "name": "redis", "url": "redis://u:hunter2@h:6379?dial_timout=3"}}})
    assert "dial_timout" in message and "hunter2" not in message
    cluster = "redis://h1:6379?dial_timeout=3&addr=h2:6379&addr=h3:6379"
    assert "Cluster" in refused({"storage": {"rootDirectory": "/r", "remoteCache": True,
                                             "cacheDriver": {"name": "redis", "url": cluster}}})


def test_redis_cache_options_as_keys_become_a_url() -> None:
    s = storage(remoteCache=True, cacheDriver={"name": "redis", "addr": "h:6380", "password": "pw", "db": 3,
                                               "dial_timeout": "5s", "read_timeout": 2_000_000_000,
                                               "pool_size": 4, "keyprefix": "reg"})
    assert isinstance(s.cache_driver, RedisCacheConfig)
    assert s.cache_driver.target == "redis://:pw@h:6380/3?socket_connect_timeout=5&socket_timeout=2&max_connections=4"
    assert s.cache_driver.keyprefix == "reg"
    assert "Sentinel" in refused({"storage": {"rootDirectory": "/r", "remoteCache": True,
                                              "cacheDriver": {"name": "redis", "master_name": "m"}}})


def test_ocistore_s_own_redis_url_is_checked_at_verify_not_at_the_first_upload() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r"}, "redis": "redis://h:6379/0?read_timeout=6s"})
    assert cfg.redis_url == "redis://h:6379/0?socket_timeout=6"
    assert "redis" in refused({"storage": {"rootDirectory": "/r"}, "redis": "redis://h:6379/0?bogus=1"})


def test_http_timeouts_and_compat() -> None:
    http = parse_config({"storage": {"rootDirectory": "/r"}, "http": {
        "readTimeout": "30s", "writeTimeout": "90s", "compat": ["docker2s2"]}}).http
    assert (http.header_timeout, http.body_idle_timeout, http.write_timeout) == (30, 30, 90)
    assert "http.compat" in refused({"storage": {"rootDirectory": "/r"}, "http": {"compat": ["oci1"]}})


@pytest.mark.parametrize("key", ["externalUrl"])
def test_http_features_not_offered_are_refused_by_name(key: str) -> None:
    assert f"http.{key}: not supported by ocistore" in refused({"storage": {"rootDirectory": "/r"},
                                                               "http": {key: {}}})


def test_metrics_extension_and_its_path() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r"},
                        "extensions": {"metrics": {"enable": True, "prometheus": {"path": "/ops/metrics"}}}})
    assert cfg.metrics.enable and cfg.metrics.prometheus.path == "/ops/metrics"
    assert parse_config({"storage": {"rootDirectory": "/r"}}).metrics.prometheus.path == "/metrics"
    for bad in ("/", "/v2", "metrics", "/a//b", "/a/"):
        assert "prometheus.path" in refused({"storage": {"rootDirectory": "/r"},
                                             "extensions": {"metrics": {"prometheus": {"path": bad}}}})


@pytest.mark.parametrize("name", ["search", "sync", "ui", "trust", "lint", "events", "mgmt", "apikey"])
def test_a_disabled_extension_of_any_kind_is_accepted_and_an_enabled_one_refused(name: str) -> None:
    parse_config({"storage": {"rootDirectory": "/r"},
                  "extensions": {name: {"enable": False, "anything": {"zot": "keeps"}}}})
    assert f"extensions.{name}" in refused({"storage": {"rootDirectory": "/r"},
                                            "extensions": {name: {"enable": True}}})


def test_empty_extension_blocks_follow_zots_rule() -> None:
    # Beside a block with content, an empty one is absent (viper drops it) ...
    parse_config({"storage": {"rootDirectory": "/r"}, "extensions": {"search": {}, "scrub": {"interval": "3h"}}})
    # ... but when every block is empty zot enables each one.
    assert "extensions.search" in refused({"storage": {"rootDirectory": "/r"}, "extensions": {"search": {}}})
    cfg = parse_config({"storage": {"rootDirectory": "/r"}, "extensions": {"scrub": {}, "metrics": {}}})
    assert cfg.scrub.enable and cfg.metrics.enable


def test_scrub_interval_has_zots_two_hour_floor() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r"}, "extensions": {"scrub": {"interval": "10m"}}})
    assert cfg.scrub.enable and cfg.scrub.interval == 7200


def test_top_level_keys_zot_writes_are_accepted_and_cluster_refused() -> None:
    cfg = parse_config({"distSpecVersion": "1.1.1", "goVersion": "go1.22", "commit": "abc", "releaseTag": "v2",
                        "binaryType": "full", "scheduler": {"numWorkers": 4},
                        "storage": {"rootDirectory": "/r", "fastRestart": True, "gcMaxSchedulerDelay": "1m"},
                        "log": {"level": "TRACE", "output": "/tmp/zot.log"}})
    assert cfg.log.level == "trace" and cfg.scheduler is not None and cfg.scheduler.num_workers == 4
    assert "cluster: not supported" in refused({"storage": {"rootDirectory": "/r"},
                                               "cluster": {"members": ["a"], "hashKey": "x" * 16}})


def test_unknown_keys_suggest_the_nearest_and_weak_values_decode_as_in_zot() -> None:
    assert "did you mean gcInterval?" in refused({"storage": {"rootDirectory": "/r", "gcIntervall": "1h"}})
    assert "did you mean cachetablename?" in refused({"storage": {"storageDriver": S3, "cacheDriver": {
        "name": "dynamodb", "cachetable": "t"}}})
    s = storage(gc="true", dedupe="False", commit="1")
    assert (s.gc, s.dedupe, s.commit) == (True, False, True)


def test_secrets_never_appear_in_a_message() -> None:
    message = refused({"storage": {"rootDirectory": "/r", "remoteCache": False, "storageDriver": {
        **S3, "accesskey": "AKIAEXAMPLE", "secretkey": ["s3cr3t-value"]}}})
    assert "secretkey" in message and "s3cr3t-value" not in message


def test_a_sweep_starts_only_inside_the_gc_time_window() -> None:
    s = storage(gcTimeWindow="22:00-02:00")
    day = 86400 * 20000
    assert s.until_gc_window(day + 23 * 3600) == 0 and s.until_gc_window(day + 3600) == 0
    assert s.until_gc_window(day + 2 * 3600) == 20 * 3600
    assert s.until_gc_window(day + 21 * 3600 + 1800) == 1800
    assert storage().until_gc_window(day + 12 * 3600) == 0


def test_the_scrub_floor_is_ocistores_own_key_zots_two_hours_unless_lowered() -> None:
    cfg = parse_config({"storage": {"rootDirectory": "/r"},
                        "extensions": {"scrub": {"interval": "10s", "minInterval": "5s"}}})
    assert cfg.scrub.interval == 10
    cfg = parse_config({"storage": {"rootDirectory": "/r"},
                        "extensions": {"scrub": {"interval": "1s", "minInterval": "5s"}}})
    assert cfg.scrub.interval == 5
