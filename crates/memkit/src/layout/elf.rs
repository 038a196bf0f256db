//! The `PT_LOAD` program headers of an ELF object: which addresses hold text,
//! which initialised data and which bss (the part of a writable segment past
//! `p_filesz`).

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader as _};
use object::Endianness;

const PT_LOAD: u32 = 1;
const PF_W: u32 = 2;

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
}

impl Load {
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
}

/// What the program headers say about an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub loads: Vec<Load>,
}

impl ElfInfo {
    /// `(text, data, bss)` in bytes, the way `size` splits an object but from
    /// program headers: text is every non-writable `PT_LOAD`, data the file
    /// part of the writable ones, bss their zero-filled rest.
    pub fn sizes(&self) -> (u64, u64, u64) {
        let (mut text, mut data, mut bss) = (0, 0, 0);
        for l in &self.loads {
            if l.writable() {
                data += l.filesz;
                bss += l.memsz.saturating_sub(l.filesz);
            } else {
                text += l.memsz;
            }
        }
        (text, data, bss)
    }
}

fn loads_of<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<Vec<Load>, String> {
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?;
    Ok(phdrs
        .iter()
        .filter(|p| p.p_type(endian).0 == PT_LOAD)
        .map(|p| Load {
            vaddr: p.p_vaddr(endian).into(),
            offset: p.p_offset(endian).into(),
            filesz: p.p_filesz(endian).into(),
            memsz: p.p_memsz(endian).into(),
            flags: p.p_flags(endian).0,
        })
        .collect())
}

/// Parses the program headers from the start of an ELF file. `Ok(None)` if
/// the bytes are not ELF at all.
pub fn parse(data: &[u8]) -> Result<Option<ElfInfo>, String> {
    if data.len() < 5 || &data[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let loads = match data[4] {
        2 => loads_of::<FileHeader64<Endianness>>(data)?,
        1 => loads_of::<FileHeader32<Endianness>>(data)?,
        c => return Err(format!("unknown ELF class {c}")),
    };
    Ok(Some(ElfInfo { loads }))
}

/// How many leading bytes hold the ELF and program headers (from `e_phoff`,
/// `e_phentsize` and `e_phnum`), if `head` is the start of a little-endian
/// ELF file.
fn header_span(head: &[u8]) -> Option<u64> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?) as u64);
    let (phoff, phentsize, phnum) = match head.get(4)? {
        2 => (
            u64::from_le_bytes(head.get(32..40)?.try_into().ok()?),
            u16_at(54)?,
            u16_at(56)?,
        ),
        1 => (
            u32::from_le_bytes(head.get(28..32)?.try_into().ok()?) as u64,
            u16_at(42)?,
            u16_at(44)?,
        ),
        _ => return None,
    };
    phoff.checked_add(phentsize * phnum)
}

/// Reads and parses the program headers of the file at `path`.
pub fn read(path: &Path) -> io::Result<Result<Option<ElfInfo>, String>> {
    const MAX: u64 = 1 << 20;
    let mut file = File::open(path)?;
    let mut data = Vec::with_capacity(4096);
    (&mut file).take(4096).read_to_end(&mut data)?;
    if let Some(span) = header_span(&data) {
        if span > data.len() as u64 && span <= MAX {
            (&mut file)
                .take(span - data.len() as u64)
                .read_to_end(&mut data)?;
        }
    }
    Ok(parse(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf() {
        assert_eq!(parse(b"#!/bin/sh\n"), Ok(None));
        assert!(parse(b"\x7fELF\x09").is_err());
        assert!(parse(b"\x7fELF\x02\x01").is_err());
    }

    #[test]
    fn own_executable() {
        let exe = std::env::current_exe().unwrap();
        let info = read(&exe).unwrap().unwrap().unwrap();
        assert!(
            info.loads.iter().any(|l| l.flags & 1 != 0),
            "an executable PT_LOAD"
        );
        assert!(info.loads.iter().any(|l| l.writable()));
        let (text, data, _bss) = info.sizes();
        assert!(text > 0 && data > 0);
    }
}
