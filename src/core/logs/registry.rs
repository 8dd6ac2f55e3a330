//! Which source a name is: the config's `[[source]]`s, then the built-in
//! ones (a module of its own so that the built-ins and the rest of
//! `core::logs` do not import each other).

use super::builtin;
use super::{Def, Rule, FIXED};

/// The source `name`: the config's `[[source]]`s of that name (replacing a
/// built-in one, whose default log it keeps), else the built-in one.
pub fn find(config: &[Def], name: &str) -> Option<Def> {
    let builtin = builtin::ALL
        .iter()
        .find(|b| b.name == name)
        .map(|b| b.def());
    match config.iter().find(|d| d.name == name) {
        Some(d) => Some(Def {
            default_log: builtin.and_then(|b| b.default_log),
            ..d.clone()
        }),
        None => builtin,
    }
}

/// The caveat of the built-in source `name` (none once a `[[source]]`
/// replaces it).
pub fn caveat(config: &[Def], name: &str) -> Option<&'static str> {
    if config.iter().any(|d| d.name == name) {
        return None;
    }
    builtin::ALL.iter().find(|b| b.name == name)?.caveat
}

/// Every name `--source` takes, for the error that lists them.
pub fn known(config: &[Def]) -> Vec<String> {
    let mut v: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
    for b in builtin::ALL {
        v.push(b.name.to_string());
    }
    for d in config {
        if !v.contains(&d.name) {
            v.push(d.name.clone());
        }
    }
    v
}

/// The config's `[[source]]` tables, one [`Def`] per name (tables of one
/// name are that source's rules, in order).
pub fn group(tables: Vec<(String, Rule)>) -> Vec<Def> {
    let mut out: Vec<Def> = Vec::new();
    for (name, rule) in tables {
        match out.iter_mut().find(|d| d.name == name) {
            Some(d) => d.rules.push(rule),
            None => out.push(Def {
                name,
                default_log: None,
                rules: vec![rule],
                builtin: false,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(line: &str) -> Rule {
        Rule {
            program: Some("postfix/smtpd".into()),
            line: line.into(),
            kind: "sasl-failed".into(),
            time: None,
            time_format: None,
        }
    }

    #[test]
    fn a_config_source_replaces_the_built_in_one_of_its_name() {
        let mine = group(vec![
            ("dovecot".into(), rule("(?P<addr>x)")),
            ("mine".into(), rule("(?P<addr>y)")),
            ("dovecot".into(), rule("(?P<addr>z)")),
        ]);
        let d = find(&mine, "dovecot").unwrap();
        assert_eq!((d.rules.len(), d.builtin), (2, false));
        assert_eq!(d.default_log.as_deref(), Some("/var/log/mail.log"));
        assert!(find(&mine, "vsftpd").unwrap().builtin);
        assert!(find(&mine, "nope").is_none());
        assert!(known(&mine).contains(&"mine".to_string()));
    }
}
