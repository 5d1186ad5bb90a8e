//! A cursor over a command's arguments, as handlers parse them: take the
//! next argument as bytes, an integer or a keyword, and `finish` to refuse
//! extra arguments.

use std::ops::Deref;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::mutation::{parse_f64, parse_i64};

/// Arguments a request of up to this many keeps in place, without a heap
/// allocation (SET key value is three, with its name).
const INLINE: usize = 4;

/// A request's arguments as decoded: in place when there are few, in a
/// `Vec` otherwise; reads as a slice of the arguments not yet taken.
#[derive(Debug, Default, Clone)]
pub struct ArgList {
    items: Items,
    /// Arguments before this one were taken (the command's name).
    start: usize,
}

#[derive(Debug, Clone)]
enum Items {
    Inline([Bytes; INLINE], usize),
    Heap(Vec<Bytes>),
}

impl Default for Items {
    fn default() -> Self {
        Self::Inline(Default::default(), 0)
    }
}

impl ArgList {
    /// Room for `count` arguments (a multibulk's announced count; more
    /// may still be pushed).
    #[must_use]
    pub fn with_count(count: usize, most_prealloc: usize) -> Self {
        let items =
            if count <= INLINE { Items::default() } else { Items::Heap(Vec::with_capacity(count.min(most_prealloc))) };
        Self { items, start: 0 }
    }

    pub fn push(&mut self, arg: Bytes) {
        match &mut self.items {
            Items::Inline(inline, len) if *len < INLINE => {
                inline[*len] = arg;
                *len += 1;
            }
            Items::Inline(inline, len) => {
                let mut v = Vec::with_capacity(INLINE * 2);
                v.extend(inline[..*len].iter_mut().map(std::mem::take));
                v.push(arg);
                self.items = Items::Heap(v);
            }
            Items::Heap(v) => v.push(arg),
        }
    }

    /// Takes the first argument not yet taken.
    pub fn take_first(&mut self) -> Option<Bytes> {
        let start = self.start;
        let first = self.all_mut().get_mut(start).map(std::mem::take)?;
        self.start += 1;
        Some(first)
    }

    /// Slots taken up, for memory accounting.
    #[must_use]
    pub fn capacity(&self) -> usize {
        match &self.items {
            Items::Inline(..) => INLINE,
            Items::Heap(v) => v.capacity(),
        }
    }

    fn all(&self) -> &[Bytes] {
        match &self.items {
            Items::Inline(inline, len) => &inline[..*len],
            Items::Heap(v) => v,
        }
    }

    fn all_mut(&mut self) -> &mut [Bytes] {
        match &mut self.items {
            Items::Inline(inline, len) => &mut inline[..*len],
            Items::Heap(v) => v,
        }
    }
}

impl Deref for ArgList {
    type Target = [Bytes];

    fn deref(&self) -> &[Bytes] {
        &self.all()[self.start..]
    }
}

/// Lists are equal when their arguments not yet taken are, however kept.
impl PartialEq for ArgList {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl From<Vec<Bytes>> for ArgList {
    fn from(v: Vec<Bytes>) -> Self {
        let mut list = Self::with_count(v.len(), v.len());
        for arg in v {
            list.push(arg);
        }
        list
    }
}

pub struct Args {
    items: ArgList,
}

impl Iterator for Args {
    type Item = Bytes;

    /// The next argument, if any.
    fn next(&mut self) -> Option<Bytes> {
        self.items.take_first()
    }
}

impl Args {
    /// The arguments after the command name.
    #[must_use]
    pub fn new(items: ArgList) -> Self {
        Self { items }
    }

    #[must_use]
    pub fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next argument; a syntax error if there is none.
    ///
    /// # Errors
    /// [`Error::Syntax`].
    pub fn bytes(&mut self) -> Result<Bytes> {
        self.next().ok_or(Error::Syntax)
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
        self.next().map(|b| String::from_utf8_lossy(&b).to_ascii_uppercase())
    }

    /// Everything left.
    #[must_use]
    pub fn rest(self) -> Vec<Bytes> {
        self.collect()
    }

    /// Refuses leftover arguments.
    ///
    /// # Errors
    /// [`Error::Syntax`] if any are left.
    pub fn finish(&self) -> Result<()> {
        if self.items.is_empty() { Ok(()) } else { Err(Error::Syntax) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arg_list_keeps_order_in_place_and_past_it() {
        for n in 0..10 {
            let all: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("a{i}"))).collect();
            for announced in [0, n, 100] {
                let mut list = ArgList::with_count(announced, 8);
                for a in &all {
                    list.push(a.clone());
                }
                assert_eq!(&*list, &all[..], "{n} pushed, {announced} announced");
                assert_eq!(ArgList::from(all.clone()), list);
                let first = list.take_first();
                assert_eq!(first.as_ref(), all.first());
                assert_eq!(&*list, all.get(1..).unwrap_or_default());
                assert_eq!(Args::new(list).rest(), all.get(1..).unwrap_or_default());
            }
        }
    }
}
