//! The country → continent table: `CC,CONTINENT` lines, `#` comments.
//!
//! The bundled table (`data/country_continent.csv`) is compiled in, so a
//! description needs no extra file; a description may name its own. The
//! table is also the list of country codes the description may use: a code
//! not in it is almost always a typo, and the server could not place it on a
//! continent anyway.
//!
//! `--` as the continent means "no continent" (MirrorManager's own table
//! has `A1,--`, `A2,--`, `O1,--` for the GeoIP pseudo-countries anonymous
//! proxy, satellite provider and other). Such a line is accepted and left
//! out of the table, whatever its code, so MirrorManager's file can be used
//! as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mirrorlist_core::model::Country;

use crate::error::Diagnostic;

/// The bundled table.
pub const BUNDLED: &str = include_str!("../../data/country_continent.csv");

/// A parsed table.
#[derive(Clone, Debug, Default)]
pub struct ContinentTable {
    /// Country → continent code.
    pub countries: BTreeMap<Country, String>,
}

impl ContinentTable {
    /// Parses table text; `path` names it in diagnostics. Every bad line is
    /// reported.
    pub fn parse(path: &Path, text: &str) -> Result<ContinentTable, Vec<Diagnostic>> {
        let mut countries = BTreeMap::new();
        let mut diags = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let diag = |message: String| Diagnostic {
                path: path.to_owned(),
                line: Some(i + 1),
                column: None,
                message,
            };
            let Some((cc, continent)) = line.split_once(',') else {
                diags.push(diag(format!("expected `CC,CONTINENT`, found {line:?}")));
                continue;
            };
            let (cc, continent) = (cc.trim(), continent.trim());
            if continent == "--" {
                continue;
            }
            let Some(country) = Country::parse(cc) else {
                diags.push(diag(format!("{cc:?} is not a two-letter country code")));
                continue;
            };
            if continent.len() != 2 || !continent.bytes().all(|b| b.is_ascii_uppercase()) {
                diags.push(diag(format!(
                    "country {country}: {continent:?} is not a two-letter upper-case continent code"
                )));
                continue;
            }
            if countries.insert(country, continent.to_owned()).is_some() {
                diags.push(diag(format!("country {country} is listed twice")));
            }
        }
        if countries.is_empty() && diags.is_empty() {
            diags.push(Diagnostic {
                path: path.to_owned(),
                line: None,
                column: None,
                message: "the country/continent table is empty".into(),
            });
        }
        if diags.is_empty() {
            Ok(ContinentTable { countries })
        } else {
            Err(diags)
        }
    }

    /// The bundled table.
    pub fn bundled() -> ContinentTable {
        ContinentTable::parse(Path::new("data/country_continent.csv"), BUNDLED)
            .expect("the bundled table is valid (checked by a test)")
    }

    /// Whether `country` is in the table.
    pub fn knows(&self, country: Country) -> bool {
        self.countries.contains_key(&country)
    }

    /// The continent codes the table uses.
    pub fn continents(&self) -> BTreeSet<&str> {
        self.countries.values().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_table_is_valid_and_complete() {
        let t = ContinentTable::parse(Path::new("bundled"), BUNDLED).unwrap();
        assert!(t.countries.len() > 240, "{}", t.countries.len());
        assert_eq!(t.countries[&Country::parse("DE").unwrap()], "EU");
        assert_eq!(
            t.continents().into_iter().collect::<Vec<_>>(),
            ["AF", "AN", "AS", "EU", "NA", "OC", "SA"]
        );
    }

    #[test]
    fn no_continent_lines_are_skipped() {
        let text = "DE,EU\nA1,--\nO1,--\nEU,EU\n";
        let t = ContinentTable::parse(Path::new("mm2.csv"), text).unwrap();
        let codes: Vec<_> = t.countries.keys().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["DE", "EU"]);
    }

    #[test]
    fn bad_lines_are_all_reported_with_line_numbers() {
        let text = "# comment\nDE,EU\nXYZ,EU\nFR\nUS,north\nDE,EU\n";
        let diags = ContinentTable::parse(Path::new("c.csv"), text).unwrap_err();
        let lines: Vec<_> = diags.iter().map(|d| d.line.unwrap()).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(diags[3]
            .to_string()
            .starts_with("c.csv:6: country DE is listed twice"));
    }
}
