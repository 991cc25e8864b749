//! Tests of the Lua pattern functions.
use super::*;
use crate::eval::EvalLimits;

fn lua() -> (Lua, Rc<Meter>) {
    let lua = Lua::new();
    let meter = Rc::new(Meter::new(&EvalLimits::default(), u64::MAX));
    install(&lua, &meter).expect("install the pattern functions");
    (lua, meter)
}

fn eval(lua: &Lua, code: &str) -> mlua::Result<String> {
    lua.load(code).eval::<String>()
}

/// Lua 5.4's own results for these (checked against the reference interpreter's documented
/// behaviour, one case per rule).
#[test]
fn behaves_as_lua_5_4() {
    let (lua, _) = lua();
    let cases: &[(&str, &str)] = &[
        ("return table.concat({string.find('hello world', 'o w')}, ',')", "5,7"),
        ("return table.concat({string.find('hello', 'l+')}, ',')", "3,4"),
        ("return table.concat({string.find('a.b', '.', 1, true)}, ',')", "2,2"),
        ("return table.concat({string.find('abc', '', 10)}, ',')", ""),
        ("return table.concat({string.find('abc', '', 4)}, ',')", "4,3"),
        ("return table.concat({string.find('abc', 'b', -1)}, ',')", ""),
        ("return table.concat({string.find('key = value', '(%w+)%s*=%s*(%w+)')}, ',')", "1,11,key,value"),
        ("return string.match('2024-01-15', '(%d+)-(%d+)-(%d+)') .. ''", "2024"),
        ("return select(3, string.match('2024-01-15', '(%d+)-(%d+)-(%d+)'))", "15"),
        ("return string.match('  trim  ', '^%s*(.-)%s*$')", "trim"),
        ("return tostring(string.match('hello', '()ll()'))", "3"),
        ("return string.match('THE (quick) fox', '%((%a+)%)')", "quick"),
        ("return string.match('f(a(b)c)d', '%b()')", "(a(b)c)"),
        ("return string.match('THE (quick) fox', '%f[%a]%a+', 5)", "quick"),
        ("return string.match('hello hello', '(h%a+) %1')", "hello"),
            ("return tostring(string.match('hello help', '(h%a+) %1'))", "nil"),
        ("return string.match('x]y', '[]]')", "]"),
        ("return string.match('a-b', '[a%-]+')", "a-"),
        ("return string.match('abc', '[^a]+')", "bc"),
        ("return string.match('a\\vb', 'a%sb')", "a\u{b}b"),
        ("return tostring(string.match('abc', '^b'))", "nil"),
        ("return string.match('abc', 'c$')", "c"),
        ("return string.match('a$c', '$c')", "$c"),
        ("return ('Hello'):match('%u%l+')", "Hello"),
        ("return (string.gsub('hello world', 'o', '0'))", "hell0 w0rld"),
        ("return select(2, string.gsub('hello world', 'o', '0'))", "2"),
        ("return (string.gsub('hello world', '(%w+)', '<%1>'))", "<hello> <world>"),
        ("return (string.gsub('hello world', '%w+', '%0 %0', 1))", "hello hello world"),
        ("return (string.gsub('abc', '', '-'))", "-a-b-c-"),
        ("return (string.gsub('hello world', '(%w+) (%w+)', '%2 %1'))", "world hello"),
        ("return (string.gsub('$name is $age', '%$(%w+)', {name='ann', age=3}))", "ann is 3"),
        ("return (string.gsub('$name $x', '%$(%w+)', {name='ann'}))", "ann $x"),
        ("return (string.gsub('abc', '%w', function(c) return c:upper() .. '.' end))", "A.B.C."),
        ("return (string.gsub('abc', '^a', 'x'))", "xbc"),
        ("return (string.gsub('100%', '%%', ' percent'))", "100 percent"),
        ("return (string.gsub('abc', 'b', '%%'))", "a%c"),
        ("local out = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do out[#out+1] = k .. v end return table.concat(out, ',')", "a1,b2"),
        ("local out = {} for w in ('one two'):gmatch('%a+') do out[#out+1] = w end return table.concat(out, ',')", "one,two"),
        ("local n = 0 for _ in string.gmatch('abc', 'x*') do n = n + 1 end return tostring(n)", "4"),
        ("return string.match(12345, '%d%d')", "12"),
    ];
    for (code, expected) in cases {
        assert_eq!(eval(&lua, code).expect(code), *expected, "{code}");
    }
}

#[test]
fn malformed_patterns_are_errors() {
    let (lua, _) = lua();
    for pattern in ["%", "[a", "(()", "%1", "a)", "%b", "%fx", "%0"] {
        let code = format!("return string.match('abc', {pattern:?})");
        assert!(lua.load(&code).exec().is_err(), "{pattern} should be an error");
    }
    assert!(lua.load("return string.gsub('abc', 'b', '%')").exec().is_err());
    assert!(lua
        .load("return string.gsub('abc', 'b', {}, 'x')")
        .exec()
        .is_err());
    assert!(lua
        .load("return string.gsub('abc', 'b', function() return {} end)")
        .exec()
        .is_err());
    let deep = "(".repeat(40) + &")".repeat(40);
    assert!(
        lua.load(format!("return string.find('abc', '{deep}')"))
            .exec()
            .is_err(),
        "too many captures"
    );
}

#[test]
fn a_long_subject_is_an_error() {
    let (lua, _) = lua();
    let code = format!("return string.find(string.rep('a', {}), 'b')", MAX_SUBJECT + 1);
    let error = lua.load(code).exec().expect_err("the subject is too long");
    assert!(error.to_string().contains("at most 65536"), "{error}");
    let code = format!("return string.find(string.rep('a', {MAX_SUBJECT}), 'b')");
    lua.load(code).exec().expect("a subject of the bound is searched");
}

#[test]
fn a_backtracking_pattern_stops_at_the_deadline() {
    let lua = Lua::new();
    let limits = EvalLimits {
        timeout: std::time::Duration::from_millis(200),
    };
    let meter = Rc::new(Meter::new(&limits, u64::MAX));
    install(&lua, &meter).expect("install");
    let started = std::time::Instant::now();
    let code = format!("return string.find(string.rep('a', {MAX_SUBJECT}), '(.-)(.-)(.-)(.-)b')");
    let error = lua.load(code).exec().expect_err("stopped");
    assert!(error.to_string().contains("ran longer than"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
