//! Uploaded files, kept as plain files under `<data dir>/files/{room}/{name}`. A file is
//! written to a temporary name, fsynced and renamed, so a stored name always points at a
//! whole file; the message that refers to it is written only after that.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn open(data_dir: &Path) -> std::io::Result<FileStore> {
        let root = data_dir.join("files");
        std::fs::create_dir_all(&root)?;
        Ok(FileStore { root })
    }

    /// Store `bytes` for `room` and return the stored name (random, with `ext`). Blocking.
    pub fn save(&self, room: u64, ext: &str, bytes: &[u8]) -> std::io::Result<String> {
        use rand::{distributions::Alphanumeric, Rng};
        let dir = self.root.join(room.to_string());
        std::fs::create_dir_all(&dir)?;
        let stem: String = rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
        let name = if ext.is_empty() { stem } else { format!("{stem}.{ext}") };
        let tmp = dir.join(format!(".{name}.part"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(name)
    }

    /// The path of a stored file, if `name` is a name `save` could have made.
    pub fn path(&self, room: u64, name: &str) -> Option<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        ok.then(|| self.root.join(room.to_string()).join(name))
    }
}
