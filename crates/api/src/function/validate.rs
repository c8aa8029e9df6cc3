//! Defaulting and validation of [`Function`]s: the defaults the gateway and the
//! controller rely on, and one Kubernetes-style field error per broken rule
//! (`spec.wasm`, `spec.maxScale`, `spec.schedule`, `spec.env[0].name`, …).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Function, FunctionSpec, ImageSource, WASM_INTERFACES, WasmSource};
use crate::field::FieldError;
use crate::kinds::Kind;
use crate::names::{NameRule, check_name};

/// Default `spec.memory`.
pub const DEFAULT_MEMORY: &str = "128Mi";
/// Default `spec.timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 10;
/// Longest `spec.timeoutSeconds`.
pub const MAX_TIMEOUT_SECONDS: i64 = 900;
/// Default `spec.maxScale` (raised to `minScale` when that is larger).
pub const DEFAULT_MAX_SCALE: i32 = 10;
/// Largest `spec.maxScale`.
pub const MAX_SCALE_LIMIT: i32 = 1000;
/// Default `spec.targetConcurrency`.
pub const DEFAULT_TARGET_CONCURRENCY: i32 = 10;
/// Largest `spec.targetConcurrency` and `spec.containerConcurrency`.
pub const MAX_CONCURRENCY: i32 = 1000;
/// Default `spec.scaleToZeroAfterSeconds`.
pub const DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS: i64 = 60;
/// Default `spec.wasm.configMap.key`.
pub const DEFAULT_MODULE_KEY: &str = "module.wasm";
/// Default `spec.image.port`.
pub const DEFAULT_PORT: i32 = 8080;

const ENV_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

/// Fills in the defaults of a spec.
pub fn default_spec(spec: &mut FunctionSpec) {
    set(&mut spec.memory, Quantity(DEFAULT_MEMORY.into()));
    set(&mut spec.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
    set(&mut spec.min_scale, 0);
    let min = spec.min_scale.unwrap_or(0);
    set(&mut spec.max_scale, DEFAULT_MAX_SCALE.max(min));
    set(&mut spec.target_concurrency, DEFAULT_TARGET_CONCURRENCY);
    set(&mut spec.container_concurrency, 0);
    set(
        &mut spec.scale_to_zero_after_seconds,
        DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS,
    );
    set(&mut spec.allow_network, false);
    if let Some(config_map) = spec.wasm.as_mut().and_then(|w| w.config_map.as_mut()) {
        set(&mut config_map.key, DEFAULT_MODULE_KEY.into());
    }
    if let Some(image) = spec.image.as_mut() {
        set(&mut image.port, DEFAULT_PORT);
    }
}

/// Adds an error at `field` unless `value` (when set) is within `min..=max`.
fn in_range<T>(value: Option<T>, min: T, max: T, field: &str, errors: &mut Vec<FieldError>)
where
    T: PartialOrd + std::fmt::Debug + std::fmt::Display + Copy,
{
    if let Some(v) = value
        && !(min..=max).contains(&v)
    {
        errors.push(FieldError::invalid(
            field,
            v,
            format!("must be between {min} and {max}, inclusive"),
        ));
    }
}

/// A config key: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// An environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let valid = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    bytes
        .next()
        .is_some_and(|c| valid(c) && !c.is_ascii_digit())
        && bytes.all(valid)
}

fn validate_wasm(wasm: &WasmSource, errors: &mut Vec<FieldError>) {
    match (&wasm.config_map, &wasm.oci) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "spec.wasm.oci",
            "may not be specified when `configMap` is specified",
        )),
        (None, None) => errors.push(FieldError::required(
            "spec.wasm",
            "one of `configMap` or `oci` must be specified",
        )),
        _ => {}
    }
    if let Some(config_map) = &wasm.config_map {
        if config_map.name.is_empty() {
            errors.push(FieldError::required("spec.wasm.configMap.name", ""));
        } else {
            errors.extend(check_name(
                &config_map.name,
                NameRule::Subdomain,
                "spec.wasm.configMap.name",
            ));
        }
        if let Some(key) = &config_map.key
            && !is_config_key(key)
        {
            errors.push(FieldError::invalid(
                "spec.wasm.configMap.key",
                key,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
    if let Some(oci) = &wasm.oci
        && oci.trim().is_empty()
    {
        errors.push(FieldError::required("spec.wasm.oci", ""));
    }
    if let Some(interface) = &wasm.interface
        && !WASM_INTERFACES.contains(&interface.as_str())
    {
        errors.push(FieldError::not_supported(
            "spec.wasm.interface",
            interface,
            &WASM_INTERFACES,
        ));
    }
}

fn validate_image(image: &ImageSource, errors: &mut Vec<FieldError>) {
    if image.name.trim().is_empty() {
        errors.push(FieldError::required("spec.image.name", ""));
    }
    in_range(image.port, 1, 65535, "spec.image.port", errors);
}

fn validate_memory(memory: &Quantity, errors: &mut Vec<FieldError>) {
    match crate::quantity::Quantity::parse(&memory.0) {
        Ok(q) if q.value() > 0 => {}
        Ok(_) => errors.push(FieldError::invalid(
            "spec.memory",
            &memory.0,
            "must be greater than 0",
        )),
        Err(_) => errors.push(FieldError::invalid(
            "spec.memory",
            &memory.0,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )),
    }
}

fn validate_scale(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    if let Some(min) = spec.min_scale
        && min < 0
    {
        errors.push(FieldError::invalid(
            "spec.minScale",
            min,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(max) = spec.max_scale {
        if !(1..=MAX_SCALE_LIMIT).contains(&max) {
            errors.push(FieldError::invalid(
                "spec.maxScale",
                max,
                format!("must be between 1 and {MAX_SCALE_LIMIT}, inclusive"),
            ));
        } else if let Some(min) = spec.min_scale
            && max < min
        {
            errors.push(FieldError::invalid(
                "spec.maxScale",
                max,
                "must be greater than or equal to `minScale`",
            ));
        }
    }
    in_range(
        spec.target_concurrency,
        1,
        MAX_CONCURRENCY,
        "spec.targetConcurrency",
        errors,
    );
    in_range(
        spec.container_concurrency,
        0,
        MAX_CONCURRENCY,
        "spec.containerConcurrency",
        errors,
    );
    if let Some(idle) = spec.scale_to_zero_after_seconds
        && idle < 1
    {
        errors.push(FieldError::invalid(
            "spec.scaleToZeroAfterSeconds",
            idle,
            "must be greater than or equal to 1",
        ));
    }
}

fn validate_env(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, var) in spec.env.iter().flatten().enumerate() {
        let at = format!("spec.env[{i}]");
        if var.name.is_empty() {
            errors.push(FieldError::required(format!("{at}.name"), ""));
        } else if !is_env_var_name(&var.name) {
            errors.push(FieldError::invalid(
                format!("{at}.name"),
                &var.name,
                ENV_NAME_MSG,
            ));
        } else if !names.insert(var.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{at}.name"), &var.name));
        }
        if var.value_from.is_some() {
            errors.push(FieldError::forbidden(
                format!("{at}.valueFrom"),
                "functions support only `value`",
            ));
        }
    }
}

/// Validates a spec (`spec.*` paths).
pub fn validate_spec(spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
    match (&spec.wasm, &spec.image) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "spec.wasm",
            "may not be specified when `image` is specified: set exactly one of `wasm` or `image`",
        )),
        (None, None) => errors.push(FieldError::required(
            "spec.wasm",
            "exactly one of `wasm` or `image` must be specified",
        )),
        _ => {}
    }
    if let Some(wasm) = &spec.wasm {
        validate_wasm(wasm, errors);
    }
    if let Some(image) = &spec.image {
        validate_image(image, errors);
    }
    if let Some(memory) = &spec.memory {
        validate_memory(memory, errors);
    }
    in_range(
        spec.timeout_seconds,
        1,
        MAX_TIMEOUT_SECONDS,
        "spec.timeoutSeconds",
        errors,
    );
    validate_scale(spec, errors);
    validate_env(spec, errors);
    if let Some(schedule) = &spec.schedule
        && let Err(e) = crate::cron::check(schedule)
    {
        errors.push(FieldError::invalid(
            "spec.schedule",
            schedule,
            format!("not a valid five-field cron schedule: {e}"),
        ));
    }
}

impl Kind for Function {
    fn default(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            default_spec(spec);
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        match &self.spec {
            Some(spec) => validate_spec(spec, errors),
            None => errors.push(FieldError::required("spec", "")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn function(spec: Value) -> Function {
        let mut f: Function =
            serde_json::from_value(json!({"metadata": {"name": "hello"}, "spec": spec})).unwrap();
        Kind::default(&mut f);
        f
    }

    fn errors(spec: Value) -> Vec<String> {
        let mut errors = Vec::new();
        function(spec).validate(&mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    fn wasm() -> Value {
        json!({"configMap": {"name": "hello-wasm"}})
    }

    #[test]
    fn defaults_fill_every_knob() {
        let f = function(json!({"wasm": wasm()}));
        assert_eq!(
            serde_json::to_value(f.spec.unwrap()).unwrap(),
            json!({"wasm": {"configMap": {"name": "hello-wasm", "key": "module.wasm"}},
                "memory": "128Mi", "timeoutSeconds": 10, "minScale": 0, "maxScale": 10,
                "targetConcurrency": 10, "containerConcurrency": 0,
                "scaleToZeroAfterSeconds": 60, "allowNetwork": false})
        );
        let image = function(json!({"image": {"name": "localhost/httpd:latest"}, "minScale": 12}));
        let spec = image.spec.unwrap();
        assert_eq!(spec.image.unwrap().port, Some(8080));
        assert_eq!(spec.max_scale, Some(12));
        assert!(errors(json!({"wasm": wasm()})).is_empty());
    }

    #[test]
    fn exactly_one_source() {
        assert_eq!(
            errors(json!({})),
            ["spec.wasm: Required value: exactly one of `wasm` or `image` must be specified"]
        );
        let both = errors(json!({"wasm": wasm(), "image": {"name": "x"}}));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].starts_with("spec.wasm: Forbidden"));
        assert_eq!(
            errors(json!({"wasm": {}})),
            ["spec.wasm: Required value: one of `configMap` or `oci` must be specified"]
        );
        let two = errors(json!({"wasm": {"configMap": {"name": "m"}, "oci": "r/m:1"}}));
        assert!(two[0].starts_with("spec.wasm.oci: Forbidden"), "{two:?}");
        let interface = errors(json!({"wasm": {"oci": "r/m:1", "interface": "grpc"}}));
        assert_eq!(
            interface,
            [
                "spec.wasm.interface: Unsupported value: \"grpc\": supported values: \"http\", \"cgi\""
            ]
        );
        assert_eq!(
            errors(json!({"image": {"name": " ", "port": 0}})),
            [
                "spec.image.name: Required value",
                "spec.image.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn numbers_stay_in_range() {
        let found = errors(
            json!({"wasm": wasm(), "timeoutSeconds": 901, "minScale": -1,
            "targetConcurrency": 0, "containerConcurrency": -1, "scaleToZeroAfterSeconds": 0}),
        );
        let fields: Vec<&str> = found.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec.timeoutSeconds",
                "spec.minScale",
                "spec.targetConcurrency",
                "spec.containerConcurrency",
                "spec.scaleToZeroAfterSeconds",
            ]
        );
        assert_eq!(
            errors(json!({"wasm": wasm(), "minScale": 3, "maxScale": 2})),
            ["spec.maxScale: Invalid value: 2: must be greater than or equal to `minScale`"]
        );
        assert!(errors(json!({"wasm": wasm(), "maxScale": 1001}))[0].starts_with("spec.maxScale"));
        assert!(errors(json!({"wasm": wasm(), "maxScale": 0}))[0].starts_with("spec.maxScale"));
    }

    #[test]
    fn memory_env_and_schedule_are_checked() {
        assert_eq!(
            errors(json!({"wasm": wasm(), "memory": "lots"}))[0],
            "spec.memory: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert!(
            errors(json!({"wasm": wasm(), "memory": "0"}))[0].ends_with("must be greater than 0")
        );
        let env = errors(json!({"wasm": wasm(), "env": [
            {"name": "A", "value": "1"}, {"name": "A"}, {"name": "1BAD"},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}));
        assert_eq!(env.len(), 3, "{env:?}");
        assert_eq!(env[0], "spec.env[1].name: Duplicate value: \"A\"");
        assert!(env[1].starts_with(
            "spec.env[2].name: Invalid value: \"1BAD\": a valid environment variable name"
        ));
        assert_eq!(
            env[2],
            "spec.env[3].valueFrom: Forbidden: functions support only `value`"
        );
        assert_eq!(
            errors(json!({"wasm": wasm(), "schedule": "0 25 * * *"})),
            [
                "spec.schedule: Invalid value: \"0 25 * * *\": not a valid five-field cron schedule: hour field: 25 is outside 0-23 in \"25\""
            ]
        );
        assert!(errors(json!({"wasm": wasm(), "schedule": "*/10 * * * MON-FRI"})).is_empty());
    }

    #[test]
    fn a_function_without_spec_is_refused() {
        let mut f: Function = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        Kind::default(&mut f);
        let mut errors = Vec::new();
        f.validate(&mut errors);
        assert_eq!(errors[0].to_string(), "spec: Required value");
    }
}
