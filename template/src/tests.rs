use proptest::prelude::*;
use serde_json::json;

use super::*;

fn render(source: &str, input: serde_json::Value) -> Result<String, String> {
    compile(source)
        .map_err(|e| e.to_string())?
        .render_input(&input)
        .map_err(|e| e.to_string())
}

fn ok(source: &str, input: serde_json::Value) -> String {
    match render(source, input) {
        Ok(s) => s,
        Err(e) => panic!("{source}: {e}"),
    }
}

#[test]
fn upstream_manifest_templates() {
    let input = json!({"body": {"name": "Ada Lovelace", "message": "hello world",
        "pull_request": {"number": 42, "head": {"sha": "0123456789abcdef"}}}, "subject": "my event"});
    assert_eq!(
        ok("{{ .Input.body.message | title }}", input.clone()),
        "Hello World"
    );
    assert_eq!(
        ok("{{ .Input.body.name | nospace | lower }}-", input.clone()),
        "adalovelace-"
    );
    assert_eq!(
        ok(
            "{{ .Input.body.pull_request.head.sha | substr 0 7 }}",
            input.clone()
        ),
        "0123456"
    );
    assert_eq!(
        ok(
            "{{ .Input.body.pull_request.number }}-{{ .Input.body.pull_request.head.sha | substr 0 7 }}",
            input.clone()
        ),
        "42-0123456"
    );
    assert_eq!(
        ok("Hi {{.Input.body.name}},\n", input.clone()),
        "Hi Ada Lovelace,\n"
    );
    assert_eq!(ok("{{ .Input.subject | title }}", input), "My Event");
}

#[test]
fn sprig_functions() {
    let input = json!({"s": " Hello ", "csv": "a,b,c", "list": ["x", "y"], "n": 3, "b64": "aGk=",
        "obj": {"k": "v"}, "json": "{\"a\":1}", "empty": ""});
    let cases = [
        ("{{ .Input.s | trim | upper }}", "HELLO"),
        ("{{ .Input.s | lower }}", " hello "),
        ("{{ .Input.s | trim | replace \"l\" \"L\" }}", "HeLLo"),
        ("{{ .Input.obj | toJson }}", "{\"k\":\"v\"}"),
        ("{{ (.Input.json | fromJson).a }}", "1"),
        ("{{ \"hi\" | b64enc }}", "aGk="),
        ("{{ .Input.b64 | b64dec }}", "hi"),
        ("{{ .Input.missing | default \"dflt\" }}", "dflt"),
        ("{{ .Input.empty | default \"dflt\" }}", "dflt"),
        ("{{ .Input.s | trim | quote }}", "\"Hello\""),
        ("{{ (split \",\" .Input.csv)._1 }}", "b"),
        ("{{ splitList \",\" .Input.csv | join \"-\" }}", "a-b-c"),
        ("{{ join \"+\" .Input.list }}", "x+y"),
        ("{{ if contains \"ell\" .Input.s }}yes{{ end }}", "yes"),
        ("{{ if hasPrefix \" He\" .Input.s }}yes{{ end }}", "yes"),
        ("{{ if hasSuffix \"lo \" .Input.s }}yes{{ end }}", "yes"),
        ("{{ index .Input.list 1 }}", "y"),
        (
            "{{ len .Input.list }} {{ len .Input.obj }} {{ len .Input.csv }}",
            "2 1 5",
        ),
        ("{{ printf \"%s-%d\" .Input.csv .Input.n }}", "a,b,c-3"),
        ("{{ add .Input.n 2 }}", "5"),
        (
            "{{ 1700000000 | date \"2006-01-02T15:04:05Z07:00\" }}",
            "2023-11-14T22:13:20Z",
        ),
        ("{{ .Input.missing }}", "<no value>"),
        ("{{ range .Input.list }}[{{ . }}]{{ end }}", "[x][y]"),
        ("{{- .Input.n -}}", "3"),
    ];
    for (source, expected) in cases {
        assert_eq!(ok(source, input.clone()), expected, "{source}");
    }
    let now = ok("{{ now | date \"2006\" }}", json!({}));
    assert_eq!(now.len(), 4);
}

#[test]
fn errors_are_values() {
    assert!(compile("{{ .Input.a ").is_err());
    assert!(compile("{{ nosuchfunc .Input }}").is_err());
    assert!(compile("{{ define \"a\" }}{{ template \"a\" }}{{ end }}").is_err());
    assert!(render("{{ .Input.a.b.c }}", json!({"a": 1})).is_err());
    assert!(render("{{ repeat 100000000 \"xxxxxxxx\" }}", json!({})).is_err());
}

#[test]
fn replace_is_bounded_before_it_builds_its_result() {
    // An empty `old` inserts `new` around every character: 8 KiB × 1 KiB is 8 MiB, over the bound,
    // even though `trunc` would shrink it again.
    let input = json!({"s": "x".repeat(8 * 1024), "new": "y".repeat(1024)});
    let bomb = render("{{ replace \"\" .Input.new .Input.s | trunc 1 }}", input.clone());
    assert!(bomb.is_err(), "{bomb:?}");
    let bomb = render("{{ replace \"x\" .Input.new .Input.s | trunc 1 }}", input);
    assert!(bomb.is_err(), "{bomb:?}");
    // Go's strings.Replace with an empty old, within the bound.
    assert_eq!(ok("{{ replace \"\" \"-\" \"ab\" }}", json!({})), "-a-b-");
    assert_eq!(ok("{{ replace \"aa\" \"b\" \"aaaaa\" }}", json!({})), "bba");
}

/// Found by fuzzing (`fuzz/seeds/template/non-ascii-identifier.txt`): gtmpl's lexer panicked, on a
/// thread of its own, slicing inside a non-ASCII character at the start of an identifier.
#[test]
fn non_ascii_characters_inside_actions_are_refused_not_a_lexer_panic() {
    for source in [
        "{{ \u{285} }}",
        "{{ .a }}{{ \u{e9}t\u{e9} \"d\" }}",
        "{{\u{a0}.a }}",
        "{{ .a | \u{3bb} }}",
    ] {
        let error = compile(source).expect_err("a non-ASCII character in an action is refused");
        assert!(error.reason.contains("inside an action"), "{source:?}: {error}");
    }
    // Outside actions, and inside strings, character literals and comments, it is read as before.
    assert_eq!(
        ok(
            "h\u{e9}llo {{ printf \"%s \u{2713}\" .Input.a }}{{/* \u{e9} */}}{{ `\u{e9}` }}",
            json!({"a": "\u{e9}"})
        ),
        "h\u{e9}llo \u{e9} \u{2713}\u{e9}"
    );
    assert_eq!(ok("{{ \"}}\" }}\u{e9}", json!({})), "}}\u{e9}");
}

proptest! {
    #[test]
    fn random_templates_never_panic(source in "[-a-z .|(){}\"$=:0-9A-Z]{0,40}") {
        if let Ok(t) = compile(&source) {
            let _ = t.render_input(&json!({"a": {"b": [1, "x"]}, "s": "str"}));
        }
    }

    #[test]
    fn random_actions_never_panic(body in "[-a-z .|()\"$=:0-9]{0,30}") {
        let source = format!("x{{{{ {body} }}}}y");
        if let Ok(t) = compile(&source) {
            let _ = t.render_input(&json!({"a": 1}));
        }
    }
}

/// Found by fuzzing: an action whose string runs past a `}}` to the end of the source. The `}}`
/// inside the string hid the unclosed action, and gtmpl's lexer never returned. Refused now, in
/// bounded time.
#[test]
fn an_unclosed_action_hidden_by_a_string_is_refused_not_a_hang() {
    let source = "{{ .Input | toJInput.miinssg }} {{ .Input.a | b28enc | b6.b \" }}}{{ add $x 4 | mul 2 }}{m\0\0\0{- \" eq .b \"y\" t ";
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let compiled = crate::compile(source);
        let compile_time = started.elapsed();
        if let Ok(t) = &compiled {
            let _ = t.render(&serde_json::json!({}));
        }
        let _ = tx.send((compiled.is_ok(), compile_time, started.elapsed()));
    });
    let done = rx.recv_timeout(std::time::Duration::from_secs(20));
    let Ok((compiled, _, _)) = done else {
        panic!("did not finish in 20 s");
    };
    assert!(!compiled, "an unclosed action must not compile");
    for source in ["{{ \" }} \" ", "{{ /* }} ", "{{ `}}` ", "{{ '}' "] {
        let err = crate::compile(source).err().map(|e| e.reason);
        assert!(
            err.as_deref().is_some_and(|r| r.contains("unclosed")),
            "{source:?}: {err:?}"
        );
    }
    assert!(
        crate::compile("{{ \"}}\" }}").is_ok(),
        "a `}}` inside a closed string is fine"
    );
}
