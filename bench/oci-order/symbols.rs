//! The function symbols of an ELF binary: entry addresses (as linked), sizes and names.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;
use object::{Object, ObjectKind, ObjectSymbol, SymbolKind};

/// Every sized function symbol of one binary.
pub struct Functions {
    /// Entry address → (size, names defined there; aliases share an entry).
    by_entry: BTreeMap<u64, (u64, Vec<String>)>,
    names: HashSet<String>,
    position_independent: bool,
}

impl Functions {
    /// Reads the symbol table (not the dynamic one) of the binary at `path`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an object file", path.display()))?;
        let mut by_entry: BTreeMap<u64, (u64, Vec<String>)> = BTreeMap::new();
        let mut names = HashSet::new();
        for symbol in file.symbols() {
            if symbol.kind() != SymbolKind::Text || symbol.size() == 0 || !symbol.is_definition() {
                continue;
            }
            let Ok(name) = symbol.name() else { continue };
            let slot = by_entry.entry(symbol.address()).or_insert((0, Vec::new()));
            slot.0 = slot.0.max(symbol.size());
            slot.1.push(name.to_owned());
            names.insert(name.to_owned());
        }
        anyhow::ensure!(
            !by_entry.is_empty(),
            "{} has no function symbols (stripped?)",
            path.display()
        );
        Ok(Self {
            by_entry,
            names,
            position_independent: file.kind() == ObjectKind::Dynamic,
        })
    }

    /// Entry addresses of all functions, ascending.
    pub fn entries(&self) -> Vec<u64> {
        self.by_entry.keys().copied().collect()
    }

    /// Whether the binary is position independent (a PIE): its addresses are relative
    /// to where it is loaded.
    pub fn position_independent(&self) -> bool {
        self.position_independent
    }

    /// Whether a function of this name exists.
    pub fn has_name(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The symbol names of `entries`, in their order (aliases next to each other,
    /// each name once).
    pub fn names_in_order(&self, entries: &[u64]) -> Vec<&str> {
        let mut seen = HashSet::new();
        let mut names = Vec::new();
        for entry in entries {
            if let Some((_, aliases)) = self.by_entry.get(entry) {
                for name in aliases {
                    if seen.insert(name.as_str()) {
                        names.push(name.as_str());
                    }
                }
            }
        }
        names
    }

    /// Total code size of `entries`, in bytes.
    pub fn total_size(&self, entries: &[u64]) -> u64 {
        entries
            .iter()
            .filter_map(|e| self.by_entry.get(e))
            .map(|(size, _)| size)
            .sum()
    }
}

/// The symbol names of an ordering file (comments and blank lines skipped).
pub fn read_order_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
