//! Settings read from the environment: unset means the default, a value that does not fit is
//! an error naming the variable (never a silent default).

/// A setting of the environment with a value it cannot take.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is invalid: {expected}")]
pub struct ConfigError {
    /// The variable.
    pub name: String,
    /// What it holds.
    pub value: String,
    /// What it should hold.
    pub expected: &'static str,
}

/// A number from the environment, `default` when unset, an error when it does not parse or is
/// below `min`.
pub fn env_number<T: std::str::FromStr + PartialOrd + Copy>(name: &str, default: T, min: T, expected: &'static str) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => match value.trim().parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(ConfigError { name: name.into(), value, expected }),
        },
        _ => Ok(default),
    }
}
