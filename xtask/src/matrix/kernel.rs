//! A kernel image and the modules a test needs, taken out of a Debian linux-image package.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::debian;

pub struct Kernel {
    /// As `uname -r` prints it, e.g. 6.1.0-56-amd64.
    pub release: String,
    pub image: PathBuf,
    /// Uncompressed modules, each after the modules it depends on, ready for insmod.
    pub modules: Vec<(String, PathBuf)>,
}

/// Unpacks the kernel image of `deb` and `wanted` modules with their dependencies under `dir`.
/// A second call with the same package reuses what the first unpacked.
pub fn unpack(deb: &Path, dir: &Path, wanted: &[&str]) -> anyhow::Result<Kernel> {
    let contents = debian::contents(deb)?;
    let image_member = contents
        .iter()
        .find(|p| p.starts_with("./boot/vmlinuz-") || p.starts_with("./boot/vmlinux-"))
        .with_context(|| format!("{} holds no kernel image", deb.display()))?;
    let release = image_member
        .rsplit_once("/vmlinu")
        .and_then(|(_, rest)| rest.get(2..))
        .map(str::to_owned)
        .context("kernel image name")?;
    // Module name (as modinfo's depends= spells it) -> path in the package.
    let index: BTreeMap<String, &String> = contents
        .iter()
        .filter(|p| p.contains("/kernel/"))
        .filter_map(|p| module_name(p).map(|name| (name, p)))
        .collect();

    let image = dir.join(image_member);
    if !image.exists() {
        debian::extract(deb, dir, std::slice::from_ref(image_member))?;
    }
    let mut order = Vec::new();
    for name in wanted {
        visit(
            &normalize(name),
            deb,
            dir,
            &index,
            &mut Vec::new(),
            &mut order,
        )?;
    }
    Ok(Kernel {
        release,
        image,
        modules: order,
    })
}

/// Depth first: a module's dependencies go into `order` before it.
fn visit(
    name: &str,
    deb: &Path,
    dir: &Path,
    index: &BTreeMap<String, &String>,
    path: &mut Vec<String>,
    order: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<()> {
    if order.iter().any(|(done, _)| done == name) {
        return Ok(());
    }
    if path.iter().any(|p| p == name) {
        bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
    }
    let member = index
        .get(name)
        .with_context(|| format!("no module {name} in {} (built in?)", deb.display()))?;
    let module = dir.join("modules").join(format!("{name}.ko"));
    if !module.exists() {
        let packed = dir.join(member);
        if !packed.exists() {
            debian::extract(deb, dir, std::slice::from_ref(*member))?;
        }
        decompress(&packed, &module)?;
    }
    let bytes = std::fs::read(&module)?;
    path.push(name.to_owned());
    for dependency in depends(&bytes) {
        visit(&dependency, deb, dir, index, path, order)?;
    }
    path.pop();
    order.push((name.to_owned(), module));
    Ok(())
}

/// The module name of a path like ./lib/modules/R/kernel/drivers/net/veth.ko.xz.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(normalize(stem))
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// busybox insmod hands the file to the kernel as it is, and not every kernel decompresses.
fn decompress(packed: &Path, module: &Path) -> anyhow::Result<()> {
    if let Some(parent) = module.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = packed.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        std::fs::copy(packed, module)?;
        return Ok(());
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(packed)
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {name}"))?;
    if !out.status.success() {
        bail!(
            "{tool} -d {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(module, out.stdout)?;
    Ok(())
}

/// The modules named in the `depends=` entry of a module's .modinfo section.
fn depends(module: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(start) = module.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &module[start + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(normalize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_from_modinfo() {
        let module = b"\x7fELF...\0license=GPL\0depends=ip6_udp_tunnel,udp-tunnel\0name=vxlan\0";
        assert_eq!(depends(module), ["ip6_udp_tunnel", "udp_tunnel"]);
        assert!(depends(b"\0depends=\0name=veth\0").is_empty());
        assert!(depends(b"no modinfo here").is_empty());
    }

    #[test]
    fn module_names_drop_directory_and_compression() {
        let name = module_name("./lib/modules/6.12.1/kernel/drivers/net/veth.ko.xz");
        assert_eq!(name.as_deref(), Some("veth"));
        assert_eq!(
            module_name("./a/b/udp-tunnel.ko").as_deref(),
            Some("udp_tunnel")
        );
        assert_eq!(module_name("./a/modules.builtin"), None);
    }
}
