//! Each shared primitive against a real Redis 7 (`scripts/services`),
//! with several handles standing for several replicas, and callers from
//! many tasks at once.

use super::buckets::{adjust, take};
use super::*;
use crate::service::ledger::{Ledger, Limit, Scope, Worst};
use crate::store::{BudgetPeriod, NewVirtualKeyRow, Store, UsageEvent, UsageOutcome};
use llmhost_registry::rust_decimal::Decimal;
use std::time::SystemTime;

fn replica(server: &llmhost_test_services::Service, on: OnUnavailable) -> Arc<Redis> {
    Redis::open(&RedisUrl::new(server.url()), None, on).unwrap()
}

fn bucket(key: &str, per_minute: f64, amount: f64) -> BucketSpec {
    BucketSpec {
        key: key.to_owned(),
        capacity: per_minute,
        per_second: per_minute / 60.0,
        amount,
    }
}

#[test]
fn passwords_are_redacted() {
    for (url, shown) in [
        (
            "redis://:hunter2@10.0.0.5:6379/0",
            "redis://:***@10.0.0.5:6379/0",
        ),
        ("redis://app:hunter2@host", "redis://app:***@host"),
        ("rediss://hunter2@host:6380", "rediss://***@host:6380"),
        ("redis://host:6379", "redis://host:6379"),
        ("redis://host/0?password=hunter2", "redis://host/0?***"),
        ("hunter2", "***"),
    ] {
        assert_eq!(redact(url), shown);
    }
    let url = RedisUrl::new("redis://:hunter2@127.0.0.1:1");
    assert!(!format!("{url:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_bucket() {
    let server = llmhost_test_services::redis();
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(&server, OnUnavailable::Closed))
        .collect();
    // 60 a minute: a burst of 60, then one a second. 200 callers from
    // 20 tasks on three replicas take exactly the burst (the refill in
    // the second or so they run may add one or two).
    let mut tasks = Vec::new();
    for task in 0..20 {
        let redis = replicas[task % 3].clone();
        tasks.push(tokio::spawn(async move {
            let mut taken = 0;
            for _ in 0..10 {
                let spec = [bucket("llmhost:test:rpm", 60.0, 1.0)];
                if take(&redis, &spec, Duration::ZERO).await.unwrap().is_ok() {
                    taken += 1;
                }
            }
            taken
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap();
    }
    // Timing: the refill is one a second, and the callers take well
    // under three seconds even on a loaded machine.
    assert!((60..=63).contains(&taken), "{taken} taken of a burst of 60");
    // The refusal says how long until one more fits: up to a second.
    let spec = [bucket("llmhost:test:rpm", 60.0, 1.0)];
    if let Err(wait) = take(&replicas[0], &spec, Duration::ZERO).await.unwrap() {
        assert!(wait <= Duration::from_millis(1000), "{wait:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_buckets_are_taken_all_or_none_and_adjusted() {
    let server = llmhost_test_services::redis();
    let redis = replica(&server, OnUnavailable::Closed);
    let requests = bucket("llmhost:test:both:rpm", 100.0, 1.0);
    let tokens = bucket("llmhost:test:both:tpm", 1000.0, 800.0);
    let both = [requests.clone(), tokens.clone()];
    assert!(take(&redis, &both, Duration::ZERO).await.unwrap().is_ok());
    // 200 tokens left: the second call does not fit, and takes no
    // request either.
    let wait = take(&redis, &both, Duration::ZERO)
        .await
        .unwrap()
        .unwrap_err();
    assert!(wait > Duration::from_secs(30), "{wait:?}");
    // The call used only 100 of its 800: 700 come back.
    adjust(&redis, &tokens, 100.0 - 800.0).await.unwrap();
    assert!(take(&redis, &both, Duration::ZERO).await.unwrap().is_ok());
    // 98 requests are left, whatever the refused call did.
    let one = [bucket("llmhost:test:both:rpm", 100.0, 98.0)];
    assert!(take(&redis, &one, Duration::ZERO).await.unwrap().is_ok());
    // A caller that may wait is given its place and the wait.
    let waited = take(&redis, &[requests], Duration::from_secs(5))
        .await
        .unwrap()
        .expect("reserved with a wait");
    assert!(waited > Duration::ZERO && waited <= Duration::from_millis(1200));
}

fn usage(key: i64, cost: &str) -> UsageEvent {
    UsageEvent {
        agent_id: None,
        agent_name: None,
        config_id: None,
        virtual_key_id: Some(key),
        virtual_key_name: Some("k".into()),
        request_id: None,
        route: None,
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_hour_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        cost_usd: Some(cost.parse().unwrap()),
        latency: Duration::from_millis(3),
        time_to_first_token: None,
        outcome: UsageOutcome::Ok,
        attempt: 1,
        fallback: false,
        streamed: false,
        served: Default::default(),
    }
}

async fn store_with_key(dir: &tempfile::TempDir) -> (Store, i64) {
    let store = Store::open(dir.path().join("shared.db")).await.unwrap();
    let key = store
        .insert_virtual_key(NewVirtualKeyRow {
            name: "k".into(),
            key_hash: "hash-of-k".into(),
            hash_key_id: "k00000000".into(),
            key_hint: "lhk-abcd…".into(),
            agent_name: None,
            models: None,
            budget: None,
            rpm: None,
            tpm: None,
            expires_at: None,
            cache_ttl_secs: None,
            cache_shared: false,
        })
        .await
        .unwrap();
    (store, key.id)
}

fn dollars(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_hold_across_replicas_and_are_seeded_from_the_usage_rows() {
    let server = llmhost_test_services::redis();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store_with_key(&dir).await;
    // $0.30 already spent, in the database.
    store.record_usage(usage(key, "0.30")).await.unwrap();
    let ledgers: Vec<Arc<Ledger>> = (0..3)
        .map(|_| Ledger::with_shared(store.clone(), Some(replica(&server, OnUnavailable::Closed))))
        .collect();
    let limits = [Limit {
        scope: Scope::VirtualKey(key),
        period: BudgetPeriod::Month,
        usd: Some(dollars("1.00")),
        tokens: None,
    }];
    let worst = Worst {
        usd: dollars("0.1"),
        tokens: 10,
    };
    // 60 callers on three replicas at once: $0.70 is left, so exactly
    // seven reservations of $0.10 fit.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let ledger = ledgers[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            ledger
                .reserve(&limits, worst, SystemTime::now())
                .await
                .unwrap()
        }));
    }
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(reservation) => held.push(reservation),
            Err(exceeded) => refused.push(exceeded),
        }
    }
    assert_eq!(held.len(), 7, "{refused:?}");
    assert!(
        refused[0].message.contains("$0.3 of $1.00 per month spent"),
        "{}",
        refused[0].message
    );
    // Settled at a third of their worst case (rounded up to the
    // micro-dollar): 7 × $0.033334 spent, and room again.
    for reservation in held {
        reservation.settle(Some(dollars("0.0333333")), 3);
    }
    let fits = || async {
        ledgers[1]
            .reserve(&limits, worst, SystemTime::now())
            .await
            .unwrap()
    };
    let started = std::time::Instant::now();
    let again = loop {
        // Settlements are sent off the request path.
        if let Ok(reservation) = fits().await {
            break reservation;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(again);
    let mut conn = ledgers_conn(&server).await;
    let window = BudgetPeriod::Month.window_start(SystemTime::now()).unwrap();
    let hash = format!("llmhost:budget:vk:{key}:{window}");
    // Eventually consistent only in the order the settlements land.
    let started = std::time::Instant::now();
    loop {
        let (usd, reserved): (i64, i64) = redis::cmd("HMGET")
            .arg(&hash)
            .arg("usd")
            .arg("reserved_usd")
            .query_async::<(Option<i64>, Option<i64>)>(&mut conn)
            .await
            .map(|(u, r)| (u.unwrap_or(-1), r.unwrap_or(-1)))
            .unwrap();
        if usd == 300_000 + 7 * 33_334 && reserved == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "spent {usd}, reserved {reserved}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Redis loses its data (a restart without persistence): the window
    // is seeded again from the usage rows, the durable record, once.
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    store.record_usage(usage(key, "0.55")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let ledger = ledgers[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            // Held until all have tried.
            ledger
                .reserve(&limits, worst, SystemTime::now())
                .await
                .unwrap()
                .ok()
        }));
    }
    let mut fitted = Vec::new();
    for task in tasks {
        fitted.extend(task.await.unwrap());
    }
    let fitted = fitted.len();
    // $0.85 spent in the rows: one reservation of $0.10 fits.
    assert_eq!(fitted, 1);
}

async fn ledgers_conn(
    server: &llmhost_test_services::Service,
) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_budgets_are_shared_too() {
    let server = llmhost_test_services::redis();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store_with_key(&dir).await;
    let one = Ledger::with_shared(store.clone(), Some(replica(&server, OnUnavailable::Closed)));
    let two = Ledger::with_shared(store.clone(), Some(replica(&server, OnUnavailable::Closed)));
    let limits = [Limit {
        scope: Scope::VirtualKey(key),
        period: BudgetPeriod::Total,
        usd: None,
        tokens: Some(25),
    }];
    let worst = Worst {
        usd: Decimal::ZERO,
        tokens: 10,
    };
    let now = SystemTime::now();
    let _a = one.reserve(&limits, worst, now).await.unwrap().unwrap();
    let _b = two.reserve(&limits, worst, now).await.unwrap().unwrap();
    let Err(refused) = one.reserve(&limits, worst, now).await.unwrap() else {
        panic!("a third reservation of 10 tokens fitted in 25");
    };
    assert!(
        refused
            .message
            .contains("token budget exceeded: 0 of 25 tokens per total used, 20 reserved"),
        "{}",
        refused.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_or_open_and_recovers() {
    let mut server = llmhost_test_services::redis();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store_with_key(&dir).await;
    let closed_redis = replica(&server, OnUnavailable::Closed);
    let closed = Ledger::with_shared(store.clone(), Some(closed_redis.clone()));
    let open = Ledger::with_shared(store.clone(), Some(replica(&server, OnUnavailable::Open)));
    let limits = [Limit {
        scope: Scope::VirtualKey(key),
        period: BudgetPeriod::Day,
        usd: Some(dollars("1")),
        tokens: None,
    }];
    let worst = Worst {
        usd: dollars("0.5"),
        tokens: 1,
    };
    let now = SystemTime::now();
    drop(closed.reserve(&limits, worst, now).await.unwrap().unwrap());
    assert!(closed_redis.ping().await.is_ok());

    server.stop();
    let err = match closed.reserve(&limits, worst, now).await {
        Err(err) => err,
        Ok(_) => panic!("a budget was checked without Redis"),
    };
    assert_eq!(err.kind(), crate::ErrorKind::SharedStateUnavailable);
    let text = err.to_string();
    assert!(text.contains(server.url()), "{text}");
    assert!(!closed_redis.is_up());
    assert!(
        closed_redis
            .failures()
            .iter()
            .any(|(op, n)| *op == "budget_reserve" && *n >= 1),
        "{:?}",
        closed_redis.failures()
    );
    let buckets = [bucket("llmhost:test:down", 60.0, 1.0)];
    let err = take(&closed_redis, &buckets, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::SharedStateUnavailable);
    // Fail open: the replica's own window keeps the budget meanwhile.
    let a = open.reserve(&limits, worst, now).await.unwrap().unwrap();
    let b = open.reserve(&limits, worst, now).await.unwrap().unwrap();
    assert!(open.reserve(&limits, worst, now).await.unwrap().is_err());
    drop((a, b));

    server.resume();
    // The connection is made again without a restart.
    let started = std::time::Instant::now();
    loop {
        if let Ok(result) = closed.reserve(&limits, worst, now).await {
            assert!(result.is_ok());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no recovery after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_redis.is_up());
    assert!(
        take(&closed_redis, &buckets, Duration::ZERO)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_moves_the_epoch_every_replica_reads() {
    let server = llmhost_test_services::redis();
    let one = replica(&server, OnUnavailable::Closed);
    let two = replica(&server, OnUnavailable::Closed);
    assert_eq!(two.revocation_epoch().await.unwrap(), 0);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move { one.announce_revocation().await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(two.revocation_epoch().await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_rate_limits_are_shared_and_callers_wait_their_turn() {
    use crate::resilience::{BucketKey, RateLimiter, Refusal};
    use llmhost_registry::RateLimits;
    let mut server = llmhost_test_services::redis();
    let limiters: Vec<Arc<RateLimiter>> = (0..2)
        .map(|_| {
            Arc::new(RateLimiter::new(Some(replica(
                &server,
                OnUnavailable::Closed,
            ))))
        })
        .collect();
    let key = BucketKey {
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        key_id: "k".into(),
    };
    // Ten a second, a burst of ten: 30 calls on two replicas take two
    // seconds (on per-replica buckets they would take half a second).
    let limits = RateLimits {
        requests_per_minute: Some(600),
        tokens_per_minute: None,
    };
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(60);
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (limiter, key) = (limiters[i % 2].clone(), key.clone());
            tokio::spawn(async move {
                limiter
                    .acquire_shared(&key, limits, 0, deadline)
                    .await
                    .unwrap();
                started.elapsed()
            })
        })
        .collect();
    let mut last = Duration::ZERO;
    for task in tasks {
        last = last.max(task.await.unwrap());
    }
    // Timing: the lower bound is what sharing shows; the upper one is
    // wide for a loaded machine.
    assert!(
        last >= Duration::from_millis(1800) && last < Duration::from_secs(10),
        "the last call went after {last:?}"
    );
    // A wait past the deadline reserves nothing and says how long.
    let soon = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut refused = 0;
    for _ in 0..20 {
        if let Err(Refusal::Wait(wait)) = limiters[0].acquire_shared(&key, limits, 0, soon).await {
            assert!(wait <= Duration::from_secs(3), "{wait:?}");
            refused += 1;
        }
    }
    assert!(refused > 0);
    // The balancer's hint: this replica saw the bucket spent.
    assert!(limiters[0].is_spent(&key, limits));
    server.stop();
    match limiters[1].acquire_shared(&key, limits, 0, deadline).await {
        Err(Refusal::Unavailable(err)) => {
            assert_eq!(err.kind(), crate::ErrorKind::SharedStateUnavailable)
        }
        other => panic!("not refused while Redis is down: {other:?}"),
    }
    let open = RateLimiter::new(Some(replica(&server, OnUnavailable::Open)));
    assert!(open.acquire_shared(&key, limits, 0, deadline).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_opened_on_one_replica_is_open_on_all_and_a_probe_closes_it() {
    use crate::resilience::{BreakerPolicy, Breakers};
    let server = llmhost_test_services::redis();
    let policy = BreakerPolicy {
        threshold: 2,
        cooldown: Duration::from_secs(2),
    };
    let (p, u) = ("claude", "https://api.anthropic.com");
    let one = Arc::new(Breakers::with_shared(
        policy,
        Some(replica(&server, OnUnavailable::Closed)),
    ));
    let two = Arc::new(Breakers::with_shared(
        policy,
        Some(replica(&server, OnUnavailable::Closed)),
    ));
    for _ in 0..2 {
        one.admit(p, u).unwrap().failure();
    }
    assert!(one.admit(p, u).is_err());
    // Timing: the other replica reads the open circuits four times a
    // second; it is given the whole cool-down to see it.
    let started = std::time::Instant::now();
    loop {
        match two.admit(p, u) {
            Err(wait) => {
                assert!(wait <= policy.cooldown, "{wait:?}");
                break;
            }
            Ok(permit) => permit.neutral(),
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the other replica never saw the circuit open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // After the cool-down the second replica probes; its success closes
    // the circuit in Redis.
    tokio::time::sleep(policy.cooldown).await;
    let probe = two.admit(p, u).expect("a probe after the cool-down");
    assert!(probe.is_probe());
    probe.success();
    let mut conn = ledgers_conn(&server).await;
    let started = std::time::Instant::now();
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(format!("llmhost:breaker:{p}|{u}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open in Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(two.admit(p, u).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_never_settled_lapses() {
    let server = llmhost_test_services::redis();
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store_with_key(&dir).await;
    let redis = replica(&server, OnUnavailable::Closed);
    let limits = [Limit {
        scope: Scope::VirtualKey(key),
        period: BudgetPeriod::Day,
        usd: Some(dollars("1")),
        tokens: None,
    }];
    let worst = Worst {
        usd: dollars("1"),
        tokens: 1,
    };
    let now = SystemTime::now();
    let lifetime = Duration::from_millis(300);
    let reserve = || budget::reserve_for(&redis, &store, &limits, worst, now, lifetime);
    // Its replica dies: the hold is never settled.
    let held = reserve().await.unwrap();
    assert!(held.is_ok());
    std::mem::forget(held);
    assert!(reserve().await.unwrap().is_err(), "the budget is held");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The next reservation releases what lapsed, and fits.
    assert!(reserve().await.unwrap().is_ok());
}

fn tls_replica(
    server: &llmhost_test_services::Service,
    ca: Option<&std::path::Path>,
) -> Arc<Redis> {
    Redis::open(&RedisUrl::new(server.url()), ca, OnUnavailable::Closed).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_buckets_and_revocations_work_over_tls_with_the_ca_file() {
    let server = llmhost_test_services::redis_tls();
    assert!(server.url().starts_with("rediss://"));
    let one = tls_replica(&server, server.ca_file());
    let two = tls_replica(&server, server.ca_file());
    one.ping().await.unwrap();
    // One bucket of 5, taken from two replicas over TLS.
    let spec = [bucket("llmhost:test:tls:rpm", 5.0, 1.0)];
    let mut taken = 0;
    for i in 0..8 {
        let redis = if i % 2 == 0 { &one } else { &two };
        if take(redis, &spec, Duration::ZERO).await.unwrap().is_ok() {
            taken += 1;
        }
    }
    // Timing: the refill is 5 a minute; the loop takes well under 12s.
    assert_eq!(taken, 5);
    // A budget of $1 holds two reservations of $0.5 across the replicas.
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = store_with_key(&dir).await;
    let first = Ledger::with_shared(store.clone(), Some(one.clone()));
    let second = Ledger::with_shared(store.clone(), Some(two.clone()));
    let limits = [Limit {
        scope: Scope::VirtualKey(key),
        period: BudgetPeriod::Day,
        usd: Some(dollars("1")),
        tokens: None,
    }];
    let worst = Worst {
        usd: dollars("0.5"),
        tokens: 1,
    };
    let now = SystemTime::now();
    let a = first.reserve(&limits, worst, now).await.unwrap().unwrap();
    let b = second.reserve(&limits, worst, now).await.unwrap().unwrap();
    assert!(first.reserve(&limits, worst, now).await.unwrap().is_err());
    drop((a, b));
    one.announce_revocation().await.unwrap();
    assert_eq!(two.revocation_epoch().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_and_fails_closed() {
    let server = llmhost_test_services::redis_tls();
    // Without the CA file the throwaway CA is no public root.
    let redis = tls_replica(&server, None);
    let err = redis.ping().await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::SharedStateUnavailable);
    let text = err.to_string();
    assert!(text.contains("TLS certificate is not trusted"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("redis_ca_file"), "{text}");
    let spec = [bucket("llmhost:test:tls:untrusted", 60.0, 1.0)];
    let err = take(&redis, &spec, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::SharedStateUnavailable);
    assert!(!redis.is_up());
    // The URL's password is never shown, in the error or the log.
    let with_password = server.url().replace("rediss://", "rediss://:hunter2@");
    let redis = Redis::open(&RedisUrl::new(with_password), None, OnUnavailable::Closed).unwrap();
    let text = redis.ping().await.unwrap_err().to_string();
    assert!(text.contains("rediss://:***@127.0.0.1:"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Another CA's file does not help either.
    let other = llmhost_test_services::redis_tls();
    let redis = tls_replica(&server, other.ca_file());
    let text = redis.ping().await.unwrap_err().to_string();
    assert!(text.contains("TLS certificate is not trusted"), "{text}");
}

#[tokio::test]
async fn insecure_tls_and_bad_ca_files_are_refused_with_clear_errors() {
    let open = |url: &str, ca: Option<&std::path::Path>| {
        Redis::open(&RedisUrl::new(url), ca, OnUnavailable::Closed).unwrap_err()
    };
    let err = open("rediss://:hunter2@127.0.0.1:6380/#insecure", None);
    assert_eq!(err.kind(), crate::ErrorKind::InvalidConfig);
    let text = err.to_string();
    assert!(text.contains("#insecure"), "{text}");
    assert!(text.contains("redis_ca_file"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let text = open("rediss://:hunter2@127.0.0.1:6380", Some(&missing)).to_string();
    assert!(text.contains("cannot be read"), "{text}");
    assert!(text.contains("missing.pem"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let text = open("rediss://127.0.0.1:6380", Some(&junk)).to_string();
    assert!(text.contains("holds no certificate"), "{text}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = open("rediss://127.0.0.1:6380", Some(&broken)).to_string();
    assert!(text.contains("is not PEM certificates"), "{text}");

    // A CA file is for TLS: with redis:// it is a mistake, said so.
    let server = llmhost_test_services::redis_tls();
    let text = open("redis://:hunter2@127.0.0.1:6380", server.ca_file()).to_string();
    assert!(text.contains("does not use TLS"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // The public roots alone are enough to make a client.
    assert!(
        Redis::open(
            &RedisUrl::new("rediss://127.0.0.1:6380"),
            None,
            OnUnavailable::Closed
        )
        .is_ok()
    );
}
