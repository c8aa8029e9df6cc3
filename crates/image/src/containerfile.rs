//! Containerfile (Dockerfile) parsing: the instruction subset Strata builds, with
//! line continuations, comments, exec (JSON) and shell forms, and `$VAR` / `${VAR}` /
//! `${VAR:-default}` / `${VAR:+alt}` substitution. Also applies config-only
//! instructions (`CMD`, `ENV`, …) to an image config, which `image import --change`
//! uses too.

use std::collections::BTreeMap;

use crate::config::ImageConfig;

/// A parse or semantic error, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ContainerfileError {
    /// 1-based line number where the instruction starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A command in exec form (`["a", "b"]`) or shell form (`a b`, run by `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// Arguments as given.
    Exec(Vec<String>),
    /// A shell command line.
    Shell(String),
}

impl CommandForm {
    /// The argv this runs.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandForm::Exec(args) => args.clone(),
            CommandForm::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM image [AS name]` (`scratch` for no base).
    From {
        /// The base image.
        image: String,
        /// The stage name.
        alias: Option<String>,
    },
    /// `RUN`.
    Run(CommandForm),
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `ENV k=v …` (or the legacy `ENV k v`).
    Env(Vec<(String, String)>),
    /// `ARG name[=default]`.
    Arg {
        /// The variable.
        name: String,
        /// Its default.
        default: Option<String>,
    },
    /// `LABEL k=v …`.
    Label(Vec<(String, String)>),
    /// `EXPOSE 8080 53/udp`.
    Expose(Vec<String>),
    /// `WORKDIR dir`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
    /// `VOLUME ["/data"]` or `VOLUME /data /logs`.
    Volume(Vec<String>),
    /// `STOPSIGNAL SIGTERM`.
    StopSignal(String),
    /// `COPY [--chown=u:g] [--from=stage] src… dest`.
    Copy(CopySpec),
    /// `ADD [--chown=u:g] src… dest` (local files; local tar archives are unpacked).
    Add(CopySpec),
}

/// Sources and destination of `COPY` / `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Paths relative to the build context.
    pub sources: Vec<String>,
    /// Path in the image.
    pub dest: String,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--from=stage-or-image` (COPY only).
    pub from: Option<String>,
}

/// An instruction with the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line.
    pub line: usize,
    /// The instruction (variables not yet substituted: that depends on build state).
    pub instruction: Instruction,
    /// The text as written (for history and cache keys).
    pub text: String,
}

fn err(line: usize, message: impl Into<String>) -> ContainerfileError {
    ContainerfileError {
        line,
        message: message.into(),
    }
}

/// Parses a whole Containerfile.
pub fn parse(text: &str) -> Result<Vec<Step>, ContainerfileError> {
    let mut steps = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !pending.is_empty() && trimmed.starts_with('#') {
            continue; // comment lines inside a continuation are dropped, as Docker does
        }
        if pending.is_empty() {
            start = number;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        steps.push(parse_instruction(pending.trim(), start)?);
        pending.clear();
    }
    if !pending.is_empty() {
        steps.push(parse_instruction(pending.trim(), start)?);
    }
    Ok(steps)
}

/// Parses one instruction (as given to `--change`).
pub fn parse_instruction(text: &str, line: usize) -> Result<Step, ContainerfileError> {
    let (keyword, rest) = match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (text, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(err(line, format!("{keyword} needs an argument")));
    }
    let instruction = match keyword.as_str() {
        "FROM" => {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [image] => Instruction::From {
                    image: image.to_string(),
                    alias: None,
                },
                [image, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => Instruction::From {
                    image: image.to_string(),
                    alias: Some(alias.to_string()),
                },
                _ => return Err(err(line, "FROM takes an image and an optional `AS name`")),
            }
        }
        "RUN" => Instruction::Run(command_form(rest, line)?),
        "CMD" => Instruction::Cmd(command_form(rest, line)?),
        "ENTRYPOINT" => Instruction::Entrypoint(command_form(rest, line)?),
        "ENV" => Instruction::Env(key_values(rest, line, "ENV", true)?),
        "LABEL" => Instruction::Label(key_values(rest, line, "LABEL", false)?),
        "ARG" => match rest.split_once('=') {
            Some((name, default)) => Instruction::Arg {
                name: name.to_string(),
                default: Some(unquote(default)),
            },
            None => Instruction::Arg {
                name: rest.to_string(),
                default: None,
            },
        },
        "EXPOSE" => Instruction::Expose(rest.split_whitespace().map(str::to_string).collect()),
        "WORKDIR" => Instruction::Workdir(rest.to_string()),
        "USER" => Instruction::User(rest.to_string()),
        "STOPSIGNAL" => Instruction::StopSignal(rest.to_string()),
        "VOLUME" => Instruction::Volume(match json_array(rest) {
            Some(list) => list,
            None => rest.split_whitespace().map(str::to_string).collect(),
        }),
        "COPY" => Instruction::Copy(copy_spec(rest, line, true)?),
        "ADD" => Instruction::Add(copy_spec(rest, line, false)?),
        other => {
            return Err(err(
                line,
                format!(
                    "unsupported instruction {other} (supported: FROM, RUN, CMD, ENTRYPOINT, ENV, ARG, LABEL, EXPOSE, WORKDIR, USER, VOLUME, STOPSIGNAL, COPY, ADD)"
                ),
            ));
        }
    };
    Ok(Step {
        line,
        instruction,
        text: text.to_string(),
    })
}

fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str(text).ok()
}

fn command_form(rest: &str, line: usize) -> Result<CommandForm, ContainerfileError> {
    if let Some(args) = json_array(rest) {
        if args.is_empty() {
            return Err(err(line, "empty command"));
        }
        return Ok(CommandForm::Exec(args));
    }
    if rest.starts_with('[') {
        // Docker treats an invalid JSON array as shell form; a typo here is far more
        // likely, and running `[ "sh"` through a shell never does what was meant.
        return Err(err(
            line,
            "command looks like an exec-form JSON array but is not valid JSON (use double quotes)",
        ));
    }
    Ok(CommandForm::Shell(rest.to_string()))
}

fn unquote(value: &str) -> String {
    let v = value.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        let inner = &v[1..v.len() - 1];
        if v.starts_with('"') {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        return inner.to_string();
    }
    v.to_string()
}

/// Splits `a=1 b="two words" c='x'` into pairs, honouring quotes and backslashes.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => current.push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (_, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

fn key_values(
    rest: &str,
    line: usize,
    keyword: &str,
    legacy_form: bool,
) -> Result<Vec<(String, String)>, ContainerfileError> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if legacy_form && !first.contains('=') {
        // `ENV KEY value with spaces`
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| err(line, format!("{keyword} {rest} has no value")))?;
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    split_words(rest)
        .into_iter()
        .map(|word| {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| err(line, format!("{keyword} expects KEY=VALUE, got {word:?}")))?;
            if k.is_empty() {
                return Err(err(line, format!("{keyword} has an empty key in {word:?}")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn copy_spec(rest: &str, line: usize, is_copy: bool) -> Result<CopySpec, ContainerfileError> {
    let mut words: Vec<String> = match json_array(rest) {
        Some(list) => list,
        None => split_words(rest),
    };
    let mut chown = None;
    let mut from = None;
    while let Some(flag) = words.first().filter(|w| w.starts_with("--")).cloned() {
        words.remove(0);
        if let Some(v) = flag.strip_prefix("--chown=") {
            chown = Some(v.to_string());
        } else if let Some(v) = flag.strip_prefix("--from=").filter(|_| is_copy) {
            from = Some(v.to_string());
        } else {
            return Err(err(line, format!("unsupported flag {flag}")));
        }
    }
    if words.len() < 2 {
        return Err(err(
            line,
            "COPY/ADD needs at least one source and a destination",
        ));
    }
    let dest = words.pop().unwrap_or_default();
    Ok(CopySpec {
        sources: words,
        dest,
        chown,
        from,
    })
}

/// Replaces `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` from `vars`
/// (unknown variables become empty, as in Docker). `\$` is a literal dollar.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'$') {
            out.push('$');
            chars.next();
            continue;
        }
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            let value = if let Some((name, default)) = inner.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| default.to_string())
            } else if let Some((name, alt)) = inner.split_once(":+") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .map(|_| alt.to_string())
                    .unwrap_or_default()
            } else {
                vars.get(&inner).cloned().unwrap_or_default()
            };
            out.push_str(&value);
            continue;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
        }
    }
    out
}

/// Sets `KEY=VALUE` in an env list, replacing an earlier value of the same key.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
    {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// Applies a config-only instruction to `config`. Instructions that change the file
/// system (or FROM/ARG) are refused, naming the line.
pub fn apply_to_config(step: &Step, config: &mut ImageConfig) -> Result<(), ContainerfileError> {
    let run = &mut config.config;
    match &step.instruction {
        Instruction::Cmd(form) => run.cmd = Some(form.argv()),
        Instruction::Entrypoint(form) => {
            run.entrypoint = Some(form.argv());
            // Docker: setting ENTRYPOINT resets a CMD inherited from the base.
            run.cmd = None;
        }
        Instruction::Env(pairs) => {
            for (k, v) in pairs {
                set_env(&mut run.env, k, v);
            }
        }
        Instruction::Label(pairs) => {
            for (k, v) in pairs {
                run.labels.insert(k.clone(), v.clone());
            }
        }
        Instruction::Expose(ports) => {
            for port in ports {
                let key = if port.contains('/') {
                    port.clone()
                } else {
                    format!("{port}/tcp")
                };
                let number = key.split('/').next().unwrap_or_default();
                if number.parse::<u16>().is_err() {
                    return Err(err(step.line, format!("EXPOSE: invalid port {port:?}")));
                }
                run.exposed_ports.insert(key, serde_json::json!({}));
            }
        }
        Instruction::Workdir(dir) => {
            let joined = match (&run.working_dir, dir.starts_with('/')) {
                (Some(base), false) => format!("{}/{dir}", base.trim_end_matches('/')),
                _ => dir.clone(),
            };
            run.working_dir = Some(joined);
        }
        Instruction::User(user) => run.user = Some(user.clone()),
        Instruction::Volume(paths) => {
            for path in paths {
                run.volumes.insert(path.clone(), serde_json::json!({}));
            }
        }
        Instruction::StopSignal(signal) => run.stop_signal = Some(signal.clone()),
        Instruction::From { .. }
        | Instruction::Run(_)
        | Instruction::Arg { .. }
        | Instruction::Copy(_)
        | Instruction::Add(_) => {
            return Err(err(
                step.line,
                format!("{} cannot be applied as a config change", step.text),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containerfile_parses_with_continuations_comments_and_both_forms() {
        let text = r#"
# syntax=docker/dockerfile:1
FROM localhost/busybox:latest AS base
ARG GREETING=hello
ENV PATH=/usr/bin:/bin \
    NAME="Strata cloud" MODE=prod
RUN echo $GREETING > /greeting && \
    # a comment inside a continuation
    chmod 644 /greeting
COPY --chown=1000:1000 index.html style.css /www/
LABEL org.example.team=platform "quoted key"=v
EXPOSE 8080 53/udp
WORKDIR /www
USER 1000:1000
ENTRYPOINT ["httpd", "-f"]
CMD ["-p", "8080"]
"#;
        let steps = parse(text).unwrap();
        assert_eq!(steps.len(), 11);
        assert_eq!(steps[0].line, 3);
        assert_eq!(
            steps[2].instruction,
            Instruction::Env(vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("NAME".into(), "Strata cloud".into()),
                ("MODE".into(), "prod".into()),
            ])
        );
        assert_eq!(steps[3].line, 7);
        assert_eq!(
            steps[3].instruction,
            Instruction::Run(CommandForm::Shell(
                "echo $GREETING > /greeting &&  chmod 644 /greeting".into()
            ))
        );
        let Instruction::Copy(copy) = &steps[4].instruction else {
            panic!("expected COPY");
        };
        assert_eq!(copy.sources, vec!["index.html", "style.css"]);
        assert_eq!(copy.dest, "/www/");
        assert_eq!(copy.chown.as_deref(), Some("1000:1000"));

        let mut config = ImageConfig::for_host();
        for step in &steps[5..] {
            apply_to_config(step, &mut config).unwrap();
        }
        assert_eq!(config.command_line(&[]), vec!["httpd", "-f", "-p", "8080"]);
        assert_eq!(config.config.working_dir.as_deref(), Some("/www"));
        assert!(config.config.exposed_ports.contains_key("8080/tcp"));
        assert!(config.config.exposed_ports.contains_key("53/udp"));
        assert_eq!(config.config.labels["quoted key"], "v");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM scratch\n\nHEALTHCHECK CMD true\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("unsupported instruction HEALTHCHECK"),
            "{e}"
        );
        let e = parse("FROM scratch\nCMD ['sh']\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("COPY onlyone").is_err());
        assert!(parse("ENV =x").is_err());
        let step = parse_instruction("EXPOSE http", 1).unwrap();
        let mut config = ImageConfig::for_host();
        assert!(apply_to_config(&step, &mut config).is_err());
        let run = parse_instruction("RUN true", 4).unwrap();
        assert_eq!(apply_to_config(&run, &mut config).unwrap_err().line, 4);
    }

    #[test]
    fn variables_substitute_like_docker() {
        let vars = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]);
        assert_eq!(substitute("$A-${A}-$B-x", &vars), "1-1--x");
        assert_eq!(
            substitute("${EMPTY:-d} ${A:-d} ${A:+alt} ${B:+alt}", &vars),
            "d 1 alt "
        );
        assert_eq!(substitute("\\$A costs $", &vars), "$A costs $");
    }

    #[test]
    fn env_replaces_an_earlier_value_and_workdir_is_relative() {
        let mut config = ImageConfig::for_host();
        for text in ["ENV A=1 B=2", "ENV A 3 4", "WORKDIR /a", "WORKDIR b"] {
            apply_to_config(&parse_instruction(text, 1).unwrap(), &mut config).unwrap();
        }
        assert_eq!(config.config.env, vec!["A=3 4", "B=2"]);
        assert_eq!(config.config.working_dir.as_deref(), Some("/a/b"));
    }
}
