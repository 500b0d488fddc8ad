//! A new password for `user add` and `user passwd` when the command line
//! has none: typed at a prompt without echo (twice), or read from standard
//! input when that is not a terminal. Passwords on the command line end up
//! in shell history and process lists.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

/// `given` when the command line had one, else one from the terminal or stdin.
pub(super) fn new_password(given: Option<&str>, account: &str) -> anyhow::Result<String> {
    let password = match given {
        Some(password) => password.to_owned(),
        None if std::io::stdin().is_terminal() => prompt_twice(account)?,
        None => first_line(std::io::stdin().lock()).context("reading the password from stdin")?,
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(password)
}

fn prompt_twice(account: &str) -> anyhow::Result<String> {
    let first = rpassword::prompt_password(format!("New password for {account}: "))
        .context("reading the password from the terminal")?;
    let again = rpassword::prompt_password("Once more: ")
        .context("reading the password from the terminal")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// The first line of `input` without its line ending.
fn first_line(mut input: impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_keeps_spaces_and_drops_the_line_ending() {
        let read = |text: &str| first_line(text.as_bytes()).unwrap();
        assert_eq!(read(" two words \r\nnext\n"), " two words ");
        assert_eq!(read("last"), "last");
        assert_eq!(read(""), "");
    }
}
