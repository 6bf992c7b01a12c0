use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_one(text: &str) -> Result<Config, Vec<ConfigError>> {
    load_str("test.toml", text, &no_env)
}

fn errors_of(text: &str) -> Vec<String> {
    match load_one(text) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

const MINIMAL: &str = r#"
data_dir = "/tmp/tg"

[sources.in]
type = "stdin"

[sinks.out]
type = "file"
inputs = ["in"]
path = "/tmp/out.jsonl"
"#;

#[test]
fn parses_components_and_globals() {
    let config = load_one(MINIMAL).unwrap();
    assert_eq!(config.data_dir.as_deref(), Some(Path::new("/tmp/tg")));
    assert_eq!(config.sources["in"].type_name, "stdin");
    assert_eq!(config.sinks["out"].inputs, ["in"]);
    assert_eq!(config.sinks["out"].location.line, 7);
}

#[test]
fn typo_in_a_key_names_line_and_column() {
    let text = MINIMAL.replace("path =", "pathh =");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("test.toml:10:1: sinks.out: unknown field `pathh`"),
        "{}",
        errors[0]
    );
}

#[test]
fn wrong_type_names_the_value() {
    let text = MINIMAL.replace("[sinks.out]", "[sinks.out]\nappend = \"yes\"");
    let errors = errors_of(&text);
    assert!(
        errors[0].starts_with("test.toml:8:10: sinks.out:"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("bool"), "{}", errors[0]);
}

#[test]
fn reports_every_broken_component_not_just_the_first() {
    let text = r#"
unknown_global = true

[sources.a]
type = "stdin"
bogus = 1

[sources.b]
type = "nope"

[sinks.c]
type = "console"
inputs = "a"
"#;
    let errors = errors_of(text);
    assert_eq!(errors.len(), 4, "{errors:?}");
    let lines: Vec<&str> = errors
        .iter()
        .map(|e| e.split(':').nth(1).unwrap())
        .collect();
    assert_eq!(lines, ["2", "6", "8", "13"], "errors come in file order");
    assert!(errors.iter().any(|e| e.contains("unknown field `bogus`")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown source type `nope`"))
    );
    assert!(errors.iter().any(|e| e.contains("inputs must be an array")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown key `unknown_global`"))
    );
}

#[test]
fn syntax_errors_are_located() {
    let errors = errors_of("[sources.a\ntype = \"stdin\"\n");
    assert!(errors[0].starts_with("test.toml:1:"), "{}", errors[0]);
}

#[test]
fn interpolates_environment_and_reports_missing_variables() {
    let env = |name: &str| (name == "OUT").then(|| "/srv/out.jsonl".to_string());
    let text = MINIMAL.replace("/tmp/out.jsonl", "${OUT}");
    let config = load_str("t.toml", &text, &env).unwrap();
    let crate::sinks::SinkConfig::File(file) = &config.sinks["out"].config else {
        panic!("file sink expected");
    };
    assert_eq!(file.path, Path::new("/srv/out.jsonl"));

    let text = MINIMAL.replace("/tmp/out.jsonl", "${MISSING:?set the output path}");
    let errors = match load_str("t.toml", &text, &env) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "t.toml:10:9: environment variable `MISSING`: set the output path"
    );
}

#[test]
fn duplicate_component_across_files_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(dir.path().join("tailguard.toml"), MINIMAL).unwrap();
    let drop_in = "[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n";
    std::fs::write(conf_d.join("50-out.toml"), drop_in).unwrap();
    let paths = ConfigPaths {
        files: vec![],
        dirs: vec![dir.path().to_path_buf()],
    };
    let files = paths.resolve().unwrap();
    assert_eq!(files.len(), 2);
    let errors = load(&files, &no_env).unwrap_err();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(message.contains("tailguard.toml:7:8"), "{message}");
    assert!(message.contains("50-out.toml:1:8"), "{message}");
}

#[test]
fn drop_ins_load_in_lexical_order_after_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    for name in ["20-b.toml", "10-a.toml", "README.md", "30-c.toml"] {
        std::fs::write(conf_d.join(name), "").unwrap();
    }
    std::fs::write(dir.path().join("tailguard.toml"), "").unwrap();
    let paths = ConfigPaths {
        files: vec![],
        dirs: vec![dir.path().to_path_buf()],
    };
    let names: Vec<String> = paths
        .resolve()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["tailguard.toml", "10-a.toml", "20-b.toml", "30-c.toml"]
    );
}

#[test]
fn a_global_set_in_two_files_is_an_error() {
    let mut builder = Builder::default();
    builder.add_text(Arc::from("a.toml"), "data_dir = \"/a\"\n", &no_env);
    builder.add_text(Arc::from("b.toml"), "\ndata_dir = \"/b\"\n", &no_env);
    let errors = builder.finish(Origin::EmbeddedDefault).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "b.toml:2:1: `data_dir` is set twice: first at a.toml:1:1"
    );
}

#[test]
fn the_embedded_default_is_valid() {
    let config = load(&[], &process_env).unwrap();
    assert_eq!(config.origin, Origin::EmbeddedDefault);
    let errors = crate::topology::graph::check(&config);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn the_embedded_default_ships_over_otlp_when_the_environment_names_a_collector() {
    let env = |name: &str| {
        (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4318".to_string())
    };
    let config = load(&[], &env).unwrap();
    assert!(config.sinks.contains_key("otlp"));
    assert!(crate::topology::graph::check(&config).is_empty());
    assert!(!load(&[], &no_env).unwrap().sinks.contains_key("otlp"));
}

#[test]
fn resource_attributes_merge_across_files_and_clash_by_name() {
    let mut builder = Builder::default();
    builder.add_text(
        Arc::from("a.toml"),
        "[resource]\nfleet = \"blue\"\n",
        &no_env,
    );
    builder.add_text(
        Arc::from("b.toml"),
        "[resource]\n\"deployment.environment.name\" = \"prod\"\n",
        &no_env,
    );
    let config = builder.finish(Origin::EmbeddedDefault).unwrap();
    assert_eq!(
        config.resource,
        [
            (
                "deployment.environment.name".to_string(),
                "prod".to_string()
            ),
            ("fleet".to_string(), "blue".to_string())
        ]
    );
    let mut builder = Builder::default();
    builder.add_text(
        Arc::from("a.toml"),
        "[resource]\nfleet = \"blue\"\n",
        &no_env,
    );
    builder.add_text(
        Arc::from("b.toml"),
        "[resource]\nfleet = \"green\"\n",
        &no_env,
    );
    let errors = builder.finish(Origin::EmbeddedDefault).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "b.toml:2:1: resource `fleet` is set twice: first at a.toml:2:1"
    );
}

mod topology {
    use super::*;
    use crate::topology::graph::{check, summary};

    fn topology_errors(text: &str) -> Vec<String> {
        check(&load_one(text).unwrap())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unknown_input_names_the_component_and_suggests() {
        let errors = topology_errors(&MINIMAL.replace("inputs = [\"in\"]", "inputs = [\"inn\"]"));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("sinks.out reads from `inn`")
                    && e.contains("did you mean `in`?")),
            "{errors:?}"
        );
        // And the source is now read by nothing.
        assert!(errors.iter().any(|e| e.contains("sources.in is not read")));
    }

    #[test]
    fn cycles_and_empty_inputs_are_rejected() {
        let text = r#"
[sources.in]
type = "stdin"
[transforms.a]
type = "filter"
inputs = ["in", "b"]
[transforms.b]
type = "filter"
inputs = ["a"]
[sinks.out]
type = "console"
inputs = []
[sinks.out2]
type = "console"
inputs = ["b"]
"#;
        let errors = topology_errors(text);
        assert!(
            errors.iter().any(|e| e.contains("cycle: a -> b -> a")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("sinks.out has no inputs")),
            "{errors:?}"
        );
    }

    #[test]
    fn reading_from_a_sink_is_rejected() {
        let text = format!("{MINIMAL}\n[sinks.more]\ntype = \"console\"\ninputs = [\"out\"]\n");
        let errors = topology_errors(&text);
        assert!(
            errors.iter().any(|e| e.contains("which is a sink")),
            "{errors:?}"
        );
    }

    #[test]
    fn summary_is_one_line() {
        let line = summary(&load_one(MINIMAL).unwrap());
        assert_eq!(
            line,
            "1 source, 0 transforms, 1 sink: in(stdin) -> out(file)"
        );
    }
}
