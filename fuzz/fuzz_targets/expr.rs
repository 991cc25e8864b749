//! The expression engine (`sluice-expr`): `EXPRESSION\n---\nENV` where ENV is a JSON object whose
//! top-level keys are the names bound (as an EventSource `filter.expression` binds them).
//! Checks: compile and eval never panic, and a compiled program prints back to source that compiles
//! to an equal program.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((source, env)) = sluice_fuzz::split(data) else {
        return;
    };
    let Ok(program) = sluice_expr::compile(source) else {
        return;
    };
    let printed = program.to_string();
    let again = sluice_expr::compile(&printed)
        .unwrap_or_else(|e| panic!("printed program {printed:?} does not compile: {e}"));
    assert_eq!(
        again, program,
        "printed program {printed:?} compiles to another program"
    );
    let _ = program.names();
    let env = sluice_expr::Env::from_json_object(&sluice_fuzz::json_or_string(env));
    let _ = sluice_expr::eval(&program, &env);
});
