use proptest::prelude::*;
use serde_json::json;

use super::*;

fn env() -> Env {
    let mut env = Env::new();
    env.insert("a", Value::from("b"));
    env.insert("c", Value::Number(10.0));
    env.insert("e", Value::Bool(false));
    env.insert(
        "obj",
        Value::from(json!({"k": {"n": 3}, "list": [1, "two", true]})),
    );
    env
}

fn run(source: &str) -> Result<Value, String> {
    let program = compile(source).map_err(|e| e.to_string())?;
    eval(&program, &env()).map_err(|e| e.to_string())
}

fn is(source: &str, expected: Value) {
    assert_eq!(run(source), Ok(expected), "{source}");
}

#[test]
fn upstream_examples() {
    is(r#"a == "b" || c == 10"#, Value::Bool(true));
    is(r#"a == "b" || c != 10"#, Value::Bool(true));
    is(r#"a != "b" || c != 10"#, Value::Bool(false));
    is("e == false", Value::Bool(true));
}

#[test]
fn arithmetic_and_precedence() {
    is("1 + 2 * 3", Value::Number(7.0));
    is("(1 + 2) * 3", Value::Number(9.0));
    is("2 ** 3 ** 2", Value::Number(512.0));
    is("-c + 4", Value::Number(-6.0));
    is("7 % 4", Value::Number(3.0));
    is("c / 4", Value::Number(2.5));
    is("1.5e1", Value::Number(15.0));
    assert!(run("1 / 0").is_err());
    is("'x' + c", Value::from("x10"));
}

#[test]
fn logic_words_and_symbols() {
    is("true and not false", Value::Bool(true));
    is("!e && c > 3", Value::Bool(true));
    is("e or c >= 10", Value::Bool(true));
    // Short-circuit: the unknown name on the right is never read.
    is("true || missing", Value::Bool(true));
    is("false && missing", Value::Bool(false));
    assert!(run("missing && true").is_err());
    assert!(run("c && true").is_err());
}

#[test]
fn strings_regex_membership() {
    is("a =~ '^b$'", Value::Bool(true));
    is("a !~ 'x'", Value::Bool(true));
    is("a matches \"[a-c]\"", Value::Bool(true));
    is("a =~ a", Value::Bool(true));
    is("a in ('x', 'b')", Value::Bool(true));
    is("c in [1, 2]", Value::Bool(false));
    is("c not in [1, 2]", Value::Bool(true));
    is("'k' in obj", Value::Bool(true));
    is("'hello' contains 'ell'", Value::Bool(true));
    is(
        "'hello' startsWith 'he' && 'hello' endsWith 'lo'",
        Value::Bool(true),
    );
    is("'abc' < 'abd'", Value::Bool(true));
    assert!(run("a < 1").is_err());
    is("a == 1", Value::Bool(false));
}

#[test]
fn members_and_conditionals() {
    is("obj.k.n == 3", Value::Bool(true));
    is("obj['k'].n", Value::Number(3.0));
    is("obj.list[1]", Value::from("two"));
    is("obj.list[-1]", Value::Bool(true));
    is("obj.nope", Value::Null);
    assert!(run("obj.nope.deeper").is_err());
    assert!(run("obj.list[5]").is_err());
    is("c > 5 ? 'big' : 'small'", Value::from("big"));
    is("missing ?? 'dflt'", Value::from("dflt"));
}

#[test]
fn compile_errors_carry_positions() {
    let cases = [
        ("a ==", 4),
        ("a = 1", 2),
        ("(a", 2),
        ("a b", 2),
        ("f(1)", 1),
        ("'open", 0),
        ("a =~ '('", 2),
        ("", 0),
        ("a # b", 2),
    ];
    for (source, position) in cases {
        match compile(source) {
            Err(e) => assert_eq!(e.position, position, "{source}: {e}"),
            Ok(p) => panic!("{source} compiled to {p}"),
        }
    }
    let deep = "(".repeat(1000) + "1" + &")".repeat(1000);
    assert!(compile(&deep).is_err());
    let long_chain = vec!["1"; 5000].join(" + ");
    assert!(compile(&long_chain).is_err());
    let pow_chain = vec!["1"; 5000].join(" ** ");
    assert!(compile(&pow_chain).is_err());
    assert!(compile(&"!".repeat(5000)).is_err());
}

#[test]
fn names_and_printing() -> Result<(), CompileError> {
    let p = compile("a == 'x' && (c > 1 || a =~ \"y\\n\")")?;
    assert_eq!(p.names(), vec!["a", "c"]);
    assert_eq!(p.to_string(), "((a == \"x\") && ((c > 1) || (a =~ \"y\\n\")))");
    assert_eq!(compile(&p.to_string())?, p);
    Ok(())
}

#[test]
fn env_from_json_object_binds_top_level_keys() -> Result<(), String> {
    let env = Env::from_json_object(&json!({"type": "push", "count": 2}));
    let p = compile("type == 'push' and count > 1").map_err(|e| e.to_string())?;
    assert_eq!(eval(&p, &env), Ok(Value::Bool(true)));
    Ok(())
}

/// Source text from the grammar, so most generated inputs compile.
fn arb_source() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-e]".prop_map(String::from),
        (0u32..1000).prop_map(|n| n.to_string()),
        (0.0f64..100.0).prop_map(|n| format!("{n}")),
        "[a-z \"'\\\\]{0,4}".prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
        Just("nil".to_owned()),
    ];
    leaf.prop_recursive(6, 40, 3, |inner| {
        let ops = prop_oneof![
            Just("=="),
            Just("!="),
            Just("<"),
            Just(">="),
            Just("&&"),
            Just("||"),
            Just("and"),
            Just("or"),
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("**"),
            Just("=~"),
            Just("!~"),
            Just("in"),
            Just("not in"),
            Just("??"),
            Just("contains"),
        ];
        prop_oneof![
            (inner.clone(), ops, inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("!{a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("{a}.x")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            (inner.clone(), inner.clone(), inner).prop_map(|(a, b, c)| format!("{a} ? {b} : {c}")),
        ]
    })
}

proptest! {
    #[test]
    fn random_text_never_panics(source in "\\PC{0,60}") {
        if let Ok(p) = compile(&source) {
            let _ = eval(&p, &env());
        }
    }

    #[test]
    fn random_operator_soup_never_panics(source in "[-+*/%!=<>~&|?:.,()\\[\\]a-c0-9'\" ]{0,80}") {
        if let Ok(p) = compile(&source) {
            let _ = eval(&p, &env());
            prop_assert_eq!(compile(&p.to_string()).ok(), Some(p));
        }
    }

    #[test]
    fn print_parse_round_trip(source in arb_source()) {
        if let Ok(p) = compile(&source) {
            let printed = p.to_string();
            let reparsed = compile(&printed);
            prop_assert_eq!(reparsed.as_ref().ok(), Some(&p), "printed: {}", printed);
            // Printing is a fixed point after one round.
            prop_assert_eq!(reparsed.map(|r| r.to_string()).ok(), Some(printed));
            let _ = eval(&p, &env());
        }
    }
}
