//! A cursor over a command's arguments, as handlers parse them: take the
//! next argument as bytes, an integer or a keyword, and `finish` to refuse
//! extra arguments.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::mutation::{parse_f64, parse_i64};

pub struct Args {
    items: std::vec::IntoIter<Bytes>,
}

impl Args {
    /// The arguments after the command name.
    #[must_use]
    pub fn new(items: Vec<Bytes>) -> Self {
        Self { items: items.into_iter() }
    }

    #[must_use]
    pub fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next argument, if any.
    pub fn next(&mut self) -> Option<Bytes> {
        self.items.next()
    }

    /// The next argument; a syntax error if there is none.
    ///
    /// # Errors
    /// [`Error::Syntax`].
    pub fn bytes(&mut self) -> Result<Bytes> {
        self.items.next().ok_or(Error::Syntax)
    }

    /// The next argument as an integer.
    ///
    /// # Errors
    /// [`Error::Syntax`] if missing, [`Error::NotInteger`] if not an integer.
    pub fn int(&mut self) -> Result<i64> {
        parse_i64(&self.bytes()?).ok_or(Error::NotInteger)
    }

    /// The next argument as a float.
    ///
    /// # Errors
    /// [`Error::Syntax`] if missing, [`Error::NotFloat`] if not a float.
    pub fn float(&mut self) -> Result<f64> {
        parse_f64(&self.bytes()?).ok_or(Error::NotFloat)
    }

    /// The next argument upper-cased, for matching keywords.
    pub fn keyword(&mut self) -> Option<String> {
        self.items.next().map(|b| String::from_utf8_lossy(&b).to_ascii_uppercase())
    }

    /// Everything left.
    #[must_use]
    pub fn rest(self) -> Vec<Bytes> {
        self.items.collect()
    }

    /// Refuses leftover arguments.
    ///
    /// # Errors
    /// [`Error::Syntax`] if any are left.
    pub fn finish(&self) -> Result<()> {
        if self.items.len() == 0 { Ok(()) } else { Err(Error::Syntax) }
    }
}
