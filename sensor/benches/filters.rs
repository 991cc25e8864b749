//! Filter evaluation throughput: 5 data filters + 1 expression filter over a ~7 KB GitHub `push`
//! payload (written here, same shape as GitHub's), as `DependencyFilter::evaluate` runs per
//! delivery. Target: ≥ 300,000 events/s on one core. Criterion prints and saves the numbers
//! (target/criterion/filters).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use sluice_crds::sensor::{DataFilter, EventDependency, EventDependencyFilter, ExprFilter, PayloadField};
use sluice_eventbus::EventBuilder;
use sluice_sensor::filters::DependencyFilter;

fn user(login: &str, id: u64) -> Value {
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("https://api.github.com/users/{login}/followers"),
        "repos_url": format!("https://api.github.com/users/{login}/repos"),
        "events_url": format!("https://api.github.com/users/{login}/events{{/privacy}}"),
        "type": "User", "site_admin": false
    })
}

fn commit(i: u32) -> Value {
    json!({
        "id": format!("{:040x}", 0xabcdef_u64 * u64::from(i + 1)),
        "tree_id": format!("{:040x}", 0x123456_u64 * u64::from(i + 1)),
        "distinct": true,
        "message": format!("Deploy checkout service, change {i}: tighten retry budget"),
        "timestamp": "2026-11-26T10:15:00+01:00",
        "url": format!("https://github.com/acme/checkout/commit/{:040x}", 0xabcdef_u64 * u64::from(i + 1)),
        "author": {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": [format!("src/feature_{i}.rs")], "removed": [], "modified": ["src/lib.rs", "Cargo.toml"]
    })
}

/// A GitHub push delivery as the github event source publishes it: `{header, body}`.
fn push_payload() -> Value {
    let api = "https://api.github.com/repos/acme/checkout";
    let repository = json!({
            "id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": "checkout",
            "full_name": "acme/checkout", "private": false, "owner": user("acme", 21031067),
            "html_url": "https://github.com/acme/checkout", "description": "Checkout service",
            "fork": false, "url": api, "forks_url": format!("{api}/forks"),
            "keys_url": format!("{api}/keys{{/key_id}}"), "hooks_url": format!("{api}/hooks"),
            "issues_url": format!("{api}/issues{{/number}}"), "pulls_url": format!("{api}/pulls{{/number}}"),
            "commits_url": format!("{api}/commits{{/sha}}"), "releases_url": format!("{api}/releases{{/id}}"),
            "created_at": 1557933565, "updated_at": "2026-11-26T09:00:00Z", "pushed_at": 1764148500,
            "git_url": "git://github.com/acme/checkout.git", "ssh_url": "git@github.com:acme/checkout.git",
            "clone_url": "https://github.com/acme/checkout.git", "homepage": null, "size": 4210,
            "stargazers_count": 42, "watchers_count": 42, "language": "Rust", "has_issues": true,
            "forks_count": 3, "archived": false, "open_issues_count": 7, "license": null,
            "default_branch": "main", "master_branch": "main", "topics": ["payments", "rust"]
    });
    let body = json!({
        "ref": "refs/heads/main",
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "59b20b8d5c6ff8d09518216e8b45ddc5c3a2e6f3",
        "repository": repository,
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "organization": {"login": "acme", "id": 21031067, "url": "https://api.github.com/orgs/acme",
            "repos_url": "https://api.github.com/orgs/acme/repos", "description": "ACME"},
        "sender": user("ada", 583231),
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": "https://github.com/acme/checkout/compare/6113728f27ae...59b20b8d5c6f",
        "commits": (0..5).map(commit).collect::<Vec<_>>(),
        "head_commit": commit(4)
    });
    json!({
        "header": {"X-Github-Event": ["push"], "X-Github-Delivery": ["72d3162e-cc78-11e3-81ab-4c9367dc0958"],
            "Content-Type": ["application/json"], "User-Agent": ["GitHub-Hookshot/044aadd"]},
        "body": body
    })
}

fn data(path: &str, ty: &str, value: &str, comparator: Option<&str>) -> DataFilter {
    DataFilter {
        path: path.into(),
        type_: ty.into(),
        value: vec![value.into()],
        comparator: comparator.map(Into::into),
        template: None,
    }
}

fn dependency() -> EventDependency {
    EventDependency {
        name: "push".into(),
        event_source_name: "github".into(),
        event_name: "repo".into(),
        filters: Some(EventDependencyFilter {
            data: vec![
                data("header.X-Github-Event.0", "string", "^push$", None),
                data("body.ref", "string", "^refs/heads/(main|release-.*)$", None),
                data("body.repository.full_name", "string", "^acme/", None),
                data("body.repository.stargazers_count", "number", "10", Some(">=")),
                data("body.deleted", "bool", "false", None),
            ],
            exprs: vec![ExprFilter {
                expr: r#"pusher != "dependabot[bot]" && (forced == false || branch == "refs/heads/main")"#
                    .into(),
                fields: vec![
                    PayloadField {
                        path: "body.pusher.name".into(),
                        name: "pusher".into(),
                    },
                    PayloadField {
                        path: "body.forced".into(),
                        name: "forced".into(),
                    },
                    PayloadField {
                        path: "body.ref".into(),
                        name: "branch".into(),
                    },
                ],
            }],
            ..EventDependencyFilter::default()
        }),
        ..EventDependency::default()
    }
}

fn bench(c: &mut Criterion) {
    let payload = push_payload();
    let size = payload.to_string().len();
    let event = EventBuilder::new("github", "repo", "github")
        .id("bench")
        .data_json(payload)
        .build()
        .expect("the benchmark event builds");
    let filter = DependencyFilter::new(&dependency());
    let outcome = filter.evaluate(&event);
    assert!(outcome.passed, "the bench event must pass: {:?}", outcome.errors);
    println!("push payload: {size} bytes of JSON");
    let mut group = c.benchmark_group("filters");
    group.throughput(Throughput::Elements(1));
    group.bench_function("5 data + 1 expr, github push", |b| {
        b.iter(|| std::hint::black_box(filter.evaluate(std::hint::black_box(&event))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
