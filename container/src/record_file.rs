//! A recording (`--record FILE`) written as the run goes.

use std::io::Write;

/// Appends a recording to a file as the run goes.
pub(crate) struct RecordFile {
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl RecordFile {
    /// Creates (or truncates) the file.
    pub(crate) fn create(path: &std::path::Path) -> Result<RecordFile, String> {
        let file = std::fs::File::create(path)
            .map_err(|error| format!("cannot create the recording {}: {error}", path.display()))?;
        Ok(RecordFile {
            path: path.to_owned(),
            file: std::io::BufWriter::new(file),
        })
    }

    /// Appends records.
    pub(crate) fn append(&mut self, records: &[u8]) -> Result<(), String> {
        self.file.write_all(records).map_err(|error| {
            format!(
                "cannot write the recording {}: {error}",
                self.path.display()
            )
        })
    }

    /// Appends the last records and flushes the file.
    pub(crate) fn finish(mut self, records: &[u8]) -> Result<(), String> {
        self.append(records)?;
        self.file.flush().map_err(|error| {
            format!(
                "cannot write the recording {}: {error}",
                self.path.display()
            )
        })
    }
}
