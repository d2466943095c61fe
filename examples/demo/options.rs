//! Command-line options, parsed by hand: a handful of `--name value` (or `--name=value`) flags.

use std::time::Duration;

pub const USAGE: &str = "\
A product-catalog HTTP service (axum + SQLite) under load: no cache, then cachet, then a
cache stampede with and without coalescing loaders.

usage: cargo run --release --example demo -- [options]

options:
  --clients N       concurrent keep-alive HTTP clients           (default 64)
  --duration SECS   seconds per measured scenario, 1 and 2       (default 8; --short: 1.5)
  --products N      products in the catalog                      (default 5000; --short: 1000)
  --zipf S          Zipf exponent of product popularity, >= 0    (default 1.0)
  --short           a run of a few seconds, for CI
  -h, --help        print this help";

/// The resolved options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub clients: usize,
    pub duration: Duration,
    pub products: u64,
    pub zipf: f64,
    pub short: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments (without the program name). `--short` changes the defaults only: an
/// explicit `--duration` or `--products` wins, whatever the order.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let (mut clients, mut duration, mut products, mut zipf) = (None, None, None, None);
    let mut short = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--short" => short = true,
            "--clients" => clients = Some(number::<usize>(&name, &value()?)?),
            "--products" => products = Some(number::<u64>(&name, &value()?)?),
            "--duration" => {
                let secs = number::<f64>(&name, &value()?)?;
                if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                    return Err(format!(
                        "--duration must be in (0, 3600] seconds, not {secs}"
                    ));
                }
                duration = Some(Duration::from_secs_f64(secs));
            }
            "--zipf" => {
                let s = number::<f64>(&name, &value()?)?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("--zipf must be a finite number >= 0, not {s}"));
                }
                zipf = Some(s);
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    let clients = clients.unwrap_or(64);
    if clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let products = products.unwrap_or(if short { 1_000 } else { 5_000 });
    if products == 0 {
        return Err("--products must be at least 1".into());
    }
    Ok(Command::Run(Options {
        clients,
        duration: duration.unwrap_or(Duration::from_secs_f64(if short { 1.5 } else { 8.0 })),
        products,
        zipf: zipf.unwrap_or(1.0),
        short,
    }))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(o),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(
            (o.clients, o.products, o.zipf, o.short),
            (64, 5_000, 1.0, false)
        );
        assert_eq!(o.duration, Duration::from_secs(8));
    }

    #[test]
    fn short_changes_defaults_but_not_explicit_values() {
        let o = run(&["--products", "5000", "--short"]).unwrap();
        assert_eq!((o.products, o.short), (5_000, true));
        assert_eq!(o.duration, Duration::from_millis(1_500));
    }

    #[test]
    fn both_value_syntaxes() {
        let o = run(&["--clients=8", "--duration", "2.5", "--zipf=0.8"]).unwrap();
        assert_eq!((o.clients, o.zipf), (8, 0.8));
        assert_eq!(o.duration, Duration::from_millis(2_500));
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(["--help".to_string()]), Ok(Command::Help));
        assert!(run(&["--clients"]).unwrap_err().contains("needs a value"));
        assert!(
            run(&["--clients", "many"])
                .unwrap_err()
                .contains("not a valid number")
        );
        assert!(run(&["--clients", "0"]).is_err());
        assert!(run(&["--zipf", "-1"]).is_err());
        assert!(run(&["--duration", "0"]).is_err());
        assert!(run(&["--fast"]).unwrap_err().contains("unknown option"));
    }
}
