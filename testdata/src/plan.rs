//! The fixture plan (who owns what, where each file lives), the parallel file writer and the
//! fault injector.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use uuid::Uuid;

use crate::content::{self, Damage};
use crate::media::{self, DirCache};
use crate::{FixtureSpec, Generation, GroundTruth, IntegrityReportRow, TruthFault, AS_USER};

/// The six folders of an Immich media root.
pub(crate) const TOP_FOLDERS: [&str; 6] = [
    "upload",
    "library",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// Relative to the media root (stored as `<container_root>/<rel>`).
    Media,
    /// Relative to an external library's import path.
    Lib(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct Loc {
    pub base: Base,
    pub rel: String,
}

impl Loc {
    fn media(rel: String) -> Loc {
        Loc {
            base: Base::Media,
            rel,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fmt {
    Jpeg,
    Png,
    Mp4,
    Mov,
}

#[derive(Clone, Debug)]
pub(crate) struct Asset {
    pub id: Uuid,
    pub owner: usize,
    pub library: Option<usize>,
    pub video: bool,
    pub fmt: Fmt,
    pub original: Loc,
    pub file_name: String,
    pub device_asset_id: String,
    pub created: DateTime<Utc>,
    pub preview: Option<Loc>,
    pub thumbnail: Option<Loc>,
    pub fullsize: Option<Loc>,
    pub encoded: Option<Loc>,
    pub sidecar: Option<Loc>,
    pub live_video: Option<Uuid>,
    pub hidden: bool,
    pub trashed: bool,
    pub template: bool,
    pub write_original: bool,
    pub checksum: [u8; 20],
    pub size: u64,
    /// Overrides the stored original path (faults).
    pub db_original: Option<String>,
    /// The edited thumbnail (`asset_file` row with `isEdited` = true) of the asset that has an
    /// `asset_edit` row (v2.6+).
    pub edited_thumbnail: Option<Loc>,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub label: Option<String>,
    pub admin: bool,
    pub profile: Loc,
}

#[derive(Clone, Debug)]
pub(crate) struct Library {
    pub id: Uuid,
    pub owner: usize,
    pub name: String,
    pub import: String,
    pub host: PathBuf,
    pub exists: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub id: Uuid,
    pub owner: usize,
    pub name: String,
    pub thumb: Loc,
}

/// A detected face (`asset_face`) of a person on one of its owner's assets.
#[derive(Clone, Debug)]
pub(crate) struct Face {
    pub id: Uuid,
    /// Index into [`Plan::persons`].
    pub person: usize,
    /// Index into [`Plan::assets`].
    pub asset: usize,
}

/// Rows only Immich's own schema has (v2.6+), none of which the scanner reports on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extras {
    /// One `cluster_group` per user, same order as [`Plan::users`] (v3.2).
    pub cluster_groups: Vec<Uuid>,
    pub faces: Vec<Face>,
    /// (`stack.id`, [primary asset, other asset]).
    pub stack: Option<(Uuid, [usize; 2])>,
    /// (`asset_edit.id`, asset); the asset also has [`Asset::edited_thumbnail`].
    pub edit: Option<(Uuid, usize)>,
    /// `integrity_report` rows (v3.0+).
    pub reports: Vec<IntegrityReportRow>,
}

pub(crate) struct Plan {
    pub gen: Generation,
    pub croot: String,
    pub media_root: PathBuf,
    pub users: Vec<User>,
    pub libs: Vec<Library>,
    pub persons: Vec<Person>,
    pub assets: Vec<Asset>,
    pub now: DateTime<Utc>,
    /// Dedicated assets of the content faults, one per [`Damage::ALL`] entry.
    pub content: Vec<usize>,
    pub extras: Extras,
    /// [`FixtureSpec::original_bytes`].
    pub original_bytes: u64,
}

impl Plan {
    pub fn db_path(&self, loc: &Loc) -> String {
        match loc.base {
            Base::Media => format!("{}/{}", self.croot, loc.rel),
            Base::Lib(i) => format!("{}/{}", self.libs[i].import, loc.rel),
        }
    }

    pub fn host(&self, loc: &Loc) -> PathBuf {
        match loc.base {
            Base::Media => self.media_root.join(&loc.rel),
            Base::Lib(i) => self.libs[i].host.join(&loc.rel),
        }
    }

    pub fn original_db(&self, a: &Asset) -> String {
        a.db_original
            .clone()
            .unwrap_or_else(|| self.db_path(&a.original))
    }

    fn owner_id(&self, a: &Asset) -> Uuid {
        self.users[a.owner].id
    }
}

/// The id of an asset's `asset_file(s)` row: derived from (asset, type, isEdited), so the
/// ground truth can name a row before it is loaded. Shaped as the UUID v4 Immich's default
/// (`uuid_generate_v4()`) would give.
pub(crate) fn file_id(asset: Uuid, kind: &str, edited: bool) -> Uuid {
    let mut h = Sha1::new();
    h.update(asset.as_bytes());
    h.update(kind.as_bytes());
    h.update([u8::from(edited)]);
    let d: [u8; 20] = h.finalize().into();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

pub(crate) struct Built {
    pub plan: Plan,
    pub truth: GroundTruth,
}

fn uid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

fn split4(s: &str) -> (&str, &str) {
    (&s[0..2], &s[2..4])
}

struct Maker<'a> {
    gen: Generation,
    users: &'a [User],
    template_counter: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Jpeg,
    JpegSidecar,
    Png,
    Video,
    Live,
}

impl Maker<'_> {
    fn thumb(&self, owner: Uuid, id: Uuid, kind: &str, ext: &str) -> Loc {
        let s = id.to_string();
        let (a, b) = split4(&s);
        let sep = self.gen.thumb_sep();
        Loc::media(format!("thumbs/{owner}/{a}/{b}/{s}{sep}{kind}.{ext}"))
    }

    fn upload(&self, owner: Uuid, file: Uuid, ext: &str) -> Loc {
        let s = file.to_string();
        let (a, b) = split4(&s);
        Loc::media(format!("upload/{owner}/{a}/{b}/{s}.{ext}"))
    }

    fn date(rng: &mut StdRng) -> DateTime<Utc> {
        let base = Utc.with_ymd_and_hms(2023, 1, 1, 8, 0, 0).unwrap();
        base + Duration::seconds(rng.gen_range(0..700 * 86400))
    }

    fn base_asset(
        &self,
        id: Uuid,
        owner: usize,
        fmt: Fmt,
        original: Loc,
        file_name: String,
        created: DateTime<Utc>,
    ) -> Asset {
        Asset {
            id,
            owner,
            library: None,
            video: matches!(fmt, Fmt::Mp4 | Fmt::Mov),
            fmt,
            original,
            device_asset_id: format!("{file_name}-{}", created.timestamp()),
            file_name,
            created,
            preview: None,
            thumbnail: None,
            fullsize: None,
            encoded: None,
            sidecar: None,
            live_video: None,
            hidden: false,
            trashed: false,
            template: false,
            write_original: true,
            checksum: [0; 20],
            size: 0,
            db_original: None,
            edited_thumbnail: None,
        }
    }

    /// Push one upload asset (two for a live photo: the hidden video first).
    fn push_upload(
        &mut self,
        rng: &mut StdRng,
        out: &mut Vec<Asset>,
        owner: usize,
        role: Role,
        trashed: bool,
        allow_template: bool,
    ) {
        let uid_owner = self.users[owner].id;
        let created = Self::date(rng);
        let n = out.len();
        let (fmt, ext, name) = match role {
            Role::Jpeg | Role::JpegSidecar | Role::Live => {
                (Fmt::Jpeg, "jpg", format!("IMG_{:05}.jpg", n))
            }
            Role::Png => (Fmt::Png, "png", format!("Screenshot_{:05}.png", n)),
            Role::Video => (Fmt::Mp4, "mp4", format!("VID_{:05}.mp4", n)),
        };
        let id = uid(rng);
        let file = uid(rng);
        let mut template = false;
        let mut original = self.upload(uid_owner, file, ext);
        if allow_template && matches!(role, Role::Jpeg | Role::Png | Role::JpegSidecar) {
            let p = match (owner, &self.users[owner].label) {
                (_, Some(_)) => 0.3,
                (2, None) => 0.1,
                _ => 0.0,
            };
            if p > 0.0 && rng.gen_bool(p) {
                let label = self.users[owner]
                    .label
                    .clone()
                    .unwrap_or_else(|| uid_owner.to_string());
                self.template_counter[owner] += 1;
                let c = self.template_counter[owner];
                original = Loc::media(format!(
                    "library/{label}/{y}/{y}-{m:02}-{d:02}/IMG_{c:04}.{ext}",
                    y = created.year(),
                    m = created.month(),
                    d = created.day()
                ));
                template = true;
            }
        }
        let mut a = self.base_asset(id, owner, fmt, original, name.clone(), created);
        a.template = template;
        a.trashed = trashed;
        a.preview = Some(self.thumb(uid_owner, id, "preview", "jpeg"));
        a.thumbnail = Some(self.thumb(uid_owner, id, "thumbnail", "webp"));
        if role == Role::Video {
            let s = id.to_string();
            let (x, y) = split4(&s);
            a.encoded = Some(Loc::media(format!(
                "encoded-video/{uid_owner}/{x}/{y}/{s}.mp4"
            )));
        }
        if role == Role::JpegSidecar {
            a.sidecar = Some(Loc {
                base: a.original.base,
                rel: format!("{}.xmp", a.original.rel),
            });
        }
        if role == Role::Png && self.gen.has_asset_files() && ((n & 1) == 0 || n < 8) {
            a.fullsize = Some(self.thumb(uid_owner, id, "fullsize", "jpeg"));
        }
        if role == Role::Live {
            let vid = uid(rng);
            let vfile = uid(rng);
            let mut v = self.base_asset(
                vid,
                owner,
                Fmt::Mov,
                self.upload(uid_owner, vfile, "mov"),
                name.replace(".jpg", ".MOV"),
                created,
            );
            v.hidden = true;
            v.trashed = trashed;
            out.push(v);
            a.live_video = Some(vid);
        }
        out.push(a);
    }
}

fn make_plan(spec: &FixtureSpec, dir: &Path, media_root: &Path, rng: &mut StdRng) -> Plan {
    let gen = spec.generation;
    let nusers = spec.users.max(1);
    let mut users = Vec::with_capacity(nusers);
    for i in 0..nusers {
        let id = uid(rng);
        let file = uid(rng);
        users.push(User {
            id,
            email: if i == 0 {
                "admin@example.com".to_string()
            } else {
                format!("user{i}@example.com")
            },
            name: if i == 0 {
                "Admin".to_string()
            } else {
                format!("User {i}")
            },
            label: if i == 0 {
                Some("admin".to_string())
            } else {
                None
            },
            admin: i == 0,
            profile: Loc::media(format!("profile/{id}/{file}.jpg")),
        });
    }
    let mut libs = vec![Library {
        id: uid(rng),
        owner: 0,
        name: "Photos".into(),
        import: "/mnt/external/photos".into(),
        host: dir.join("external-photos"),
        exists: true,
    }];
    if spec.faults {
        libs.push(Library {
            id: uid(rng),
            owner: 1.min(nusers - 1),
            name: "Archive".into(),
            import: "/mnt/external/archive".into(),
            host: dir.join("external-archive"),
            exists: false,
        });
    }
    let mut persons = Vec::new();
    for (ui, u) in users.iter().enumerate() {
        for k in 0..2 {
            let id = uid(rng);
            let s = id.to_string();
            let (a, b) = split4(&s);
            persons.push(Person {
                id,
                owner: ui,
                name: format!("Person {ui}-{k}"),
                thumb: Loc::media(format!("thumbs/{}/{a}/{b}/{s}.jpeg", u.id)),
            });
        }
    }

    let mut m = Maker {
        gen,
        users: &users,
        template_counter: vec![0; nusers],
    };
    let n = if spec.faults {
        spec.assets.max(40)
    } else {
        spec.assets
    };
    let mut assets = Vec::with_capacity(n + n / 20 + 16);
    for i in 0..n {
        let owner = i % nusers;
        let role = match i {
            0 | 1 => Role::Video,
            2 => Role::Live,
            3 => Role::Png,
            4 => Role::JpegSidecar,
            _ => {
                let r: f64 = rng.gen();
                if r < 0.05 {
                    Role::Video
                } else if r < 0.08 {
                    Role::Live
                } else if r < 0.16 {
                    Role::Png
                } else if r < 0.26 {
                    Role::JpegSidecar
                } else {
                    Role::Jpeg
                }
            }
        };
        let trashed = i == 5 || (i > 5 && role == Role::Jpeg && rng.gen_bool(0.02));
        m.push_upload(rng, &mut assets, owner, role, trashed, true);
    }
    if spec.faults {
        // Enough plain upload images for the fault set (each fault its own asset).
        let mut pool = assets.iter().filter(|a| plain_upload_image(a)).count();
        let mut i = n;
        while pool < 24 {
            m.push_upload(rng, &mut assets, i % nusers, Role::Jpeg, false, false);
            pool += 1;
            i += 1;
        }
    }

    // One dedicated upload asset per content fault, so no other fault touches its files.
    let mut content = Vec::new();
    if spec.content_faults {
        for (k, d) in Damage::ALL.into_iter().enumerate() {
            let role = match d.wants() {
                'p' => Role::Png,
                'v' => Role::Video,
                _ => Role::Jpeg,
            };
            content.push(assets.len());
            m.push_upload(rng, &mut assets, k % nusers, role, false, false);
        }
        // Then one per phone/camera case (HEIC, AVIF, JPEG XL, DNG), written over a JPEG.
        for k in 0..crate::phones::Case::ALL.len() {
            content.push(assets.len());
            m.push_upload(rng, &mut assets, k % nusers, Role::Jpeg, false, false);
        }
    }

    // External library "Photos" (present).
    let n_ext = 3 + n / 500;
    let subdirs = ["2019/summer", "2020/winter", "2021"];
    for j in 0..n_ext {
        let lib = 0;
        let owner = libs[lib].owner;
        let id = uid(rng);
        let name = format!("DSC_{j:04}.jpg");
        let rel = format!("{}/{name}", subdirs[j % subdirs.len()]);
        let created = Maker::date(rng);
        let mut a = m.base_asset(
            id,
            owner,
            Fmt::Jpeg,
            Loc {
                base: Base::Lib(lib),
                rel,
            },
            name,
            created,
        );
        a.library = Some(lib);
        a.preview = Some(m.thumb(users[owner].id, id, "preview", "jpeg"));
        a.thumbnail = Some(m.thumb(users[owner].id, id, "thumbnail", "webp"));
        assets.push(a);
    }
    // External library "Archive" (mount absent).
    if spec.faults {
        let lib = 1;
        let owner = libs[lib].owner;
        let k = rng.gen_range(3..=5);
        for j in 0..k {
            let id = uid(rng);
            let name = format!("scan_{j:03}.jpg");
            let created = Maker::date(rng);
            let mut a = m.base_asset(
                id,
                owner,
                Fmt::Jpeg,
                Loc {
                    base: Base::Lib(lib),
                    rel: format!("scans/{name}"),
                },
                name,
                created,
            );
            a.library = Some(lib);
            a.write_original = false;
            a.size = rng.gen_range(20_000..90_000);
            a.preview = Some(m.thumb(users[owner].id, id, "preview", "jpeg"));
            a.thumbnail = Some(m.thumb(users[owner].id, id, "thumbnail", "webp"));
            assets.push(a);
        }
    }
    drop(m);
    Plan {
        gen,
        croot: gen.container_root().to_string(),
        media_root: media_root.to_path_buf(),
        users,
        libs,
        persons,
        assets,
        now: Utc::now(),
        content,
        extras: Extras::default(),
        original_bytes: spec.original_bytes,
    }
}

/// A plain upload image: the kind of asset faults are injected into.
fn plain_upload_image(a: &Asset) -> bool {
    a.library.is_none()
        && !a.video
        && !a.hidden
        && !a.trashed
        && a.live_video.is_none()
        && !a.template
        && a.sidecar.is_none()
        && a.fullsize.is_none()
        && a.original.rel.starts_with("upload/")
}

/// Asset indices chosen for each fault.
struct Selection {
    missing_original: usize,
    missing_preview: usize,
    missing_thumbnail: usize,
    missing_encoded: usize,
    moved_doubled: usize,
    decoy: usize,
    wrong_prefix: [usize; 2],
    perm_original: usize,
    perm_thumbnail: usize,
    perm_bucket: usize,
    dir_original: usize,
    empty_preview: usize,
    dotdot: usize,
    symlink: usize,
    trashed_missing: usize,
}

/// Directory (relative to the media root) of a thumbs-folder file.
fn parent_rel(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn thumbs_locs(a: &Asset) -> impl Iterator<Item = (&'static str, &Loc)> {
    [
        ("preview", a.preview.as_ref()),
        ("thumbnail", a.thumbnail.as_ref()),
        ("fullsize", a.fullsize.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, l)| l.map(|l| (k, l)))
}

fn select_faults(plan: &mut Plan, rng: &mut StdRng, maker_users: &[User]) -> Result<Selection> {
    // Negative control: a dedicated trashed upload image whose original will be deleted.
    let owner = 1.min(plan.users.len() - 1);
    let mut m = Maker {
        gen: plan.gen,
        users: maker_users,
        template_counter: vec![0; plan.users.len()],
    };
    let at = plan.assets.len();
    m.push_upload(rng, &mut plan.assets, owner, Role::Jpeg, true, false);
    let trashed_missing = at;

    // Which entities have files in each thumbs bucket directory.
    let mut buckets: HashMap<&str, HashSet<Uuid>> = HashMap::new();
    for a in &plan.assets {
        for (_, l) in thumbs_locs(a) {
            buckets.entry(parent_rel(&l.rel)).or_default().insert(a.id);
        }
    }
    for p in &plan.persons {
        buckets
            .entry(parent_rel(&p.thumb.rel))
            .or_default()
            .insert(p.id);
    }

    let mut pool: Vec<usize> = (0..plan.assets.len())
        .filter(|&i| {
            i != trashed_missing
                && plain_upload_image(&plan.assets[i])
                && !plan.content.contains(&i)
        })
        .collect();
    pool.shuffle(rng);
    if pool.len() < 16 {
        bail!("internal: only {} plain assets for faults", pool.len());
    }
    let exclusive = pool.iter().position(|&i| {
        let a = &plan.assets[i];
        a.preview
            .as_ref()
            .and_then(|l| buckets.get(parent_rel(&l.rel)))
            .is_some_and(|s| s.len() == 1)
    });
    let perm_bucket = pool.remove(exclusive.unwrap_or(0));
    let mut take = || pool.pop().ok_or_else(|| anyhow!("fault pool exhausted"));
    let videos: Vec<usize> = (0..plan.assets.len())
        .filter(|&i| {
            let a = &plan.assets[i];
            a.encoded.is_some()
                && !a.trashed
                && !a.hidden
                && a.library.is_none()
                && !plan.content.contains(&i)
        })
        .collect();
    let missing_encoded = *videos
        .choose(rng)
        .ok_or_else(|| anyhow!("no video asset for the encoded-video fault"))?;
    Ok(Selection {
        missing_original: take()?,
        missing_preview: take()?,
        missing_thumbnail: take()?,
        missing_encoded,
        moved_doubled: take()?,
        decoy: take()?,
        wrong_prefix: [take()?, take()?],
        perm_original: take()?,
        perm_thumbnail: take()?,
        perm_bucket,
        dir_original: take()?,
        empty_preview: take()?,
        dotdot: take()?,
        symlink: take()?,
        trashed_missing,
    })
}

pub(crate) fn sha1(bytes: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(bytes);
    h.finalize().into()
}

/// Pixel seed: the entity id plus one byte for the file kind.
fn seed(id: &Uuid, kind: u8) -> [u8; 17] {
    let mut s = [0u8; 17];
    s[..16].copy_from_slice(id.as_bytes());
    s[16] = kind;
    s
}

fn write_asset(plan: &Plan, a: &mut Asset, dirs: &mut DirCache) -> Result<()> {
    let id = a.id.to_string();
    if a.write_original {
        let bytes = match a.fmt {
            Fmt::Jpeg => media::pad_jpeg(
                media::jpeg(
                    48,
                    32,
                    &seed(&a.id, b'o'),
                    &format!("immich-fixture original {id}"),
                )?,
                plan.original_bytes,
                &seed(&a.id, b'o'),
            ),
            Fmt::Png => media::png(48, 32, &seed(&a.id, b'o'))?,
            Fmt::Mp4 | Fmt::Mov => media::mp4(&format!("immich-fixture original {id}"))?,
        };
        a.size = bytes.len() as u64;
        a.checksum = sha1(&bytes);
        dirs.write(&plan.host(&a.original), &bytes)?;
    }
    if a.library.is_some() {
        let p = format!("path:{}", plan.db_path(&a.original));
        a.checksum = sha1(p.as_bytes());
    }
    if let Some(l) = &a.preview {
        let b = media::jpeg(
            40,
            30,
            &seed(&a.id, b'p'),
            &format!("immich-fixture preview {id}"),
        )?;
        dirs.write(&plan.host(l), &b)?;
    }
    if let Some(l) = &a.thumbnail {
        let b = media::webp(24, 16, &seed(&a.id, b't'))?;
        dirs.write(&plan.host(l), &b)?;
    }
    if let Some(l) = &a.fullsize {
        let b = media::jpeg(
            48,
            32,
            &seed(&a.id, b'f'),
            &format!("immich-fixture fullsize {id}"),
        )?;
        dirs.write(&plan.host(l), &b)?;
    }
    if let Some(l) = &a.encoded {
        let b = media::mp4(&format!("immich-fixture encoded {id}"))?;
        dirs.write(&plan.host(l), &b)?;
    }
    if let Some(l) = &a.sidecar {
        dirs.write(&plan.host(l), &media::xmp(&id))?;
    }
    Ok(())
}

fn dir_roots(plan: &Plan) -> Vec<PathBuf> {
    let mut roots = vec![plan.media_root.clone()];
    roots.extend(TOP_FOLDERS.iter().map(|f| plan.media_root.join(f)));
    roots.extend(
        plan.libs
            .iter()
            .filter(|l| l.exists)
            .map(|l| l.host.clone()),
    );
    roots
}

fn write_all(plan: &mut Plan) -> Result<()> {
    let roots = dir_roots(plan);
    let mut dirs = DirCache::with_roots(roots.iter().map(PathBuf::as_path));
    for u in &plan.users {
        let b = media::jpeg(
            32,
            32,
            &seed(&u.id, b'u'),
            &format!("immich-fixture profile {}", u.id),
        )?;
        dirs.write(&plan.host(&u.profile), &b)?;
    }
    for p in &plan.persons {
        let b = media::jpeg(
            32,
            32,
            &seed(&p.id, b'f'),
            &format!("immich-fixture person {}", p.id),
        )?;
        dirs.write(&plan.host(&p.thumb), &b)?;
    }

    let mut assets = std::mem::take(&mut plan.assets);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let chunk = assets.len().div_ceil(threads).max(1);
    let shared: &Plan = plan;
    let res: Result<()> = std::thread::scope(|s| {
        let handles: Vec<_> = assets
            .chunks_mut(chunk)
            .map(|part| {
                let roots = &roots;
                s.spawn(move || -> Result<()> {
                    let mut dirs = DirCache::with_roots(roots.iter().map(PathBuf::as_path));
                    for a in part.iter_mut() {
                        write_asset(shared, a, &mut dirs)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("fixture writer thread panicked"))??;
        }
        Ok(())
    });
    plan.assets = assets;
    res
}

pub(crate) fn truth_for(
    plan: &Plan,
    a: &Asset,
    file: &str,
    fault: &str,
    db_path: String,
) -> TruthFault {
    TruthFault {
        level: "exists".into(),
        asset_id: Some(a.id.to_string()),
        owner_id: Some(plan.owner_id(a).to_string()),
        file: Some(file.to_string()),
        fault: fault.to_string(),
        db_path: Some(db_path),
        found_at: None,
        root: None,
        affected: None,
    }
}

fn remove(p: &Path) -> Result<()> {
    std::fs::remove_file(p).with_context(|| format!("remove {}", p.display()))
}

/// `<media>/upload/<rest>` -> `<media>/upload/upload/<rest>` (one level too deep).
fn doubled(plan: &Plan, loc: &Loc) -> PathBuf {
    let folder = loc.rel.split('/').next().unwrap_or("upload");
    plan.media_root.join(folder).join(&loc.rel)
}

/// [`doubled`] as Immich would store it: `/data/upload/upload/<rest>`.
fn doubled_db(plan: &Plan, loc: &Loc) -> String {
    let folder = loc.rel.split('/').next().unwrap_or("upload");
    format!("{}/{folder}/{}", plan.croot, loc.rel)
}

/// Adds the rows only Immich's own schema has (v2.6+), choosing after the faults were placed
/// so none of them changes a finding: one `cluster_group` per user (v3.2), one face per
/// person, one stack and one edit (with its edited thumbnail, written here and healthy) on
/// assets with no fault on any file, and (v3.0+) the `integrity_report` rows Immich's own
/// checks would have left for some of the injected faults.
fn add_extras(
    plan: &mut Plan,
    rng: &mut StdRng,
    sel: Option<&Selection>,
    faults: &[TruthFault],
    trashed: &[TruthFault],
) -> Result<()> {
    let g = plan.gen;
    let faulty: HashSet<String> = faults
        .iter()
        .chain(trashed)
        .filter_map(|f| f.asset_id.clone())
        .collect();
    // Healthy: an upload image (no live photo, not hidden or trashed) with no fault on any
    // of its files and no content damage. Every asset with a file in the restricted bucket
    // directory has a fault, so healthy assets' thumbs folders are readable.
    let healthy: Vec<usize> = (0..plan.assets.len())
        .filter(|&i| {
            let a = &plan.assets[i];
            a.library.is_none()
                && !a.video
                && !a.hidden
                && !a.trashed
                && a.live_video.is_none()
                && a.thumbnail.is_some()
                && a.original.rel.starts_with("upload/")
                && !plan.content.contains(&i)
                && !faulty.contains(&a.id.to_string())
        })
        .collect();
    let mut ex = Extras::default();
    if g.person_groups() {
        ex.cluster_groups = plan.users.iter().map(|_| uid(rng)).collect();
    }
    for (pi, p) in plan.persons.iter().enumerate() {
        let on = (0..plan.assets.len()).find(|&i| {
            let a = &plan.assets[i];
            a.owner == p.owner && !a.video && !a.hidden && !a.trashed
        });
        if let Some(asset) = on {
            ex.faces.push(Face {
                id: uid(rng),
                person: pi,
                asset,
            });
        }
    }
    if let Some(&edited) = healthy.first() {
        ex.edit = Some((uid(rng), edited));
        let a = &plan.assets[edited];
        let s = a.id.to_string();
        let (x, y) = split4(&s);
        let loc = Loc::media(format!(
            "thumbs/{}/{x}/{y}/{s}{}thumbnail_edited.webp",
            plan.users[a.owner].id,
            g.thumb_sep()
        ));
        let bytes = media::webp(24, 16, &seed(&a.id, b'e'))?;
        let mut dirs = DirCache::with_roots(dir_roots(plan).iter().map(PathBuf::as_path));
        dirs.write(&plan.host(&loc), &bytes)?;
        plan.assets[edited].edited_thumbnail = Some(loc);
    }
    // Two healthy assets of one owner (not the edited one): the first is the primary.
    let edited = ex.edit.map(|(_, i)| i);
    let rest: Vec<usize> = healthy
        .iter()
        .copied()
        .filter(|&i| Some(i) != edited)
        .collect();
    let pair = rest.iter().enumerate().find_map(|(k, &i)| {
        rest[k + 1..]
            .iter()
            .find(|&&j| plan.assets[j].owner == plan.assets[i].owner)
            .map(|&j| [i, j])
    });
    if let Some(pair) = pair {
        ex.stack = Some((uid(rng), pair));
    }

    if g.has_integrity_report() {
        let millis = plan.now.timestamp_millis().max(0) as u64;
        let mut report =
            |kind: &str, path: String, asset_id: Option<Uuid>, file_asset_id: Option<Uuid>| {
                let id = uuid::Builder::from_unix_timestamp_millis(millis, &rng.gen()).into_uuid();
                ex.reports.push(IntegrityReportRow {
                    id: id.to_string(),
                    kind: kind.to_string(),
                    path,
                    asset_id: asset_id.map(|u| u.to_string()),
                    file_asset_id: file_asset_id.map(|u| u.to_string()),
                });
            };
        if let Some(sel) = sel {
            // Immich's missing-files check: an original (assetId) ...
            let a = &plan.assets[sel.missing_original];
            report("missing_file", plan.original_db(a), Some(a.id), None);
            // ... and a derivative (fileAssetId, assetId NULL), here the missing preview.
            let a = &plan.assets[sel.missing_preview];
            if let Some(l) = &a.preview {
                let f = file_id(a.id, "preview", false);
                report("missing_file", plan.db_path(l), None, Some(f));
            }
            // Its untracked-files check: the decoy one level too deep, which no row names.
            let d = &plan.assets[sel.decoy];
            if doubled(plan, &d.original).is_file() {
                report("untracked_file", doubled_db(plan, &d.original), None, None);
            }
        }
        // Its checksum check: the original whose scan was zeroed (a real mismatch) when the
        // content faults are there, else a stale row on a healthy asset (Immich keeps rows
        // until a refresh re-checks them).
        let zeroed = Damage::ALL
            .iter()
            .position(|d| *d == Damage::JpegZeroedScan)
            .and_then(|k| plan.content.get(k).copied());
        if let Some(i) = zeroed.or_else(|| rest.last().copied()) {
            let a = &plan.assets[i];
            report("checksum_mismatch", plan.original_db(a), Some(a.id), None);
        }
    }
    plan.extras = ex;
    Ok(())
}

fn apply_faults(plan: &mut Plan, sel: &Selection) -> Result<(Vec<TruthFault>, Vec<TruthFault>)> {
    let mut dirs = DirCache::with_roots(dir_roots(plan).iter().map(PathBuf::as_path));
    let mut out = Vec::new();
    let mut trashed = Vec::new();

    // 1. missing original
    {
        let a = &plan.assets[sel.missing_original];
        remove(&plan.host(&a.original))?;
        out.push(truth_for(
            plan,
            a,
            "original",
            "missing",
            plan.original_db(a),
        ));
    }
    // 2. missing preview / thumbnail
    for (idx, kind) in [
        (sel.missing_preview, "preview"),
        (sel.missing_thumbnail, "thumbnail"),
    ] {
        let a = &plan.assets[idx];
        let l = if kind == "preview" {
            &a.preview
        } else {
            &a.thumbnail
        };
        let l = l.as_ref().ok_or_else(|| anyhow!("asset without {kind}"))?;
        remove(&plan.host(l))?;
        out.push(truth_for(plan, a, kind, "missing", plan.db_path(l)));
    }
    // 3. missing encoded video
    {
        let a = &plan.assets[sel.missing_encoded];
        let l = a
            .encoded
            .as_ref()
            .ok_or_else(|| anyhow!("video without encoded"))?;
        remove(&plan.host(l))?;
        out.push(truth_for(
            plan,
            a,
            "encoded_video",
            "missing",
            plan.db_path(l),
        ));
    }
    // 4. original restored one level too deep
    {
        let a = &plan.assets[sel.moved_doubled];
        let from = plan.host(&a.original);
        let to = doubled(plan, &a.original);
        dirs.ensure(to.parent().unwrap_or(&plan.media_root))?;
        std::fs::rename(&from, &to)
            .with_context(|| format!("move {} -> {}", from.display(), to.display()))?;
        let mut t = truth_for(plan, a, "original", "moved", plan.original_db(a));
        t.found_at = Some(to);
        out.push(t);
    }
    // 5. decoy: original deleted, a different file (different size) at the doubled location
    {
        let a = &plan.assets[sel.decoy];
        remove(&plan.host(&a.original))?;
        let to = doubled(plan, &a.original);
        let mut tag = format!("immich-fixture DECOY for {} ", a.id);
        tag.push_str(&"x".repeat(97));
        let mut b = media::jpeg(56, 40, &seed(&a.id, b'd'), &tag)?;
        if b.len() as u64 == a.size {
            b = media::jpeg(64, 40, &seed(&a.id, b'D'), &tag)?;
        }
        dirs.write(&to, &b)?;
        out.push(truth_for(
            plan,
            a,
            "original",
            "missing",
            plan.original_db(a),
        ));
    }
    // 7. other media prefix (file in place, stored with the wrong container prefix)
    for &idx in &sel.wrong_prefix {
        let rel = plan.assets[idx].original.rel.clone();
        let wrong = if plan.gen.relative_paths() {
            format!("/data/{rel}")
        } else {
            format!("/usr/src/app/upload/{rel}")
        };
        plan.assets[idx].db_original = Some(wrong.clone());
        let a = &plan.assets[idx];
        let mut t = truth_for(plan, a, "original", "moved", wrong);
        t.found_at = Some(plan.host(&a.original));
        out.push(t);
    }
    // 8a. original chmod 000
    {
        let a = &plan.assets[sel.perm_original];
        media::chmod(&plan.host(&a.original), 0o000)?;
        out.push(truth_for(
            plan,
            a,
            "original",
            "permission_denied",
            plan.original_db(a),
        ));
    }
    // 8b. thumbnail owned by 4242:4242 mode 0600
    {
        let a = &plan.assets[sel.perm_thumbnail];
        let l = a
            .thumbnail
            .as_ref()
            .ok_or_else(|| anyhow!("asset without thumbnail"))?;
        let p = plan.host(l);
        media::chown(&p, 4242, 4242)?;
        media::chmod(&p, 0o600)?;
        out.push(truth_for(
            plan,
            a,
            "thumbnail",
            "permission_denied",
            plan.db_path(l),
        ));
    }
    // 9. a directory where the original should be
    {
        let a = &plan.assets[sel.dir_original];
        let p = plan.host(&a.original);
        remove(&p)?;
        media::make_dir(&p)?;
        out.push(truth_for(
            plan,
            a,
            "original",
            "not_a_file",
            plan.original_db(a),
        ));
    }
    // 10. empty preview
    {
        let a = &plan.assets[sel.empty_preview];
        let l = a
            .preview
            .as_ref()
            .ok_or_else(|| anyhow!("asset without preview"))?;
        let p = plan.host(l);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .with_context(|| format!("truncate {}", p.display()))?;
        out.push(truth_for(plan, a, "preview", "empty", plan.db_path(l)));
    }
    // 11. stored path escaping the root with `..`
    {
        let p = plan.host(&plan.assets[sel.dotdot].original);
        remove(&p)?;
        let bad = format!("{}/upload/../../../etc/hostname", plan.croot);
        plan.assets[sel.dotdot].db_original = Some(bad.clone());
        let a = &plan.assets[sel.dotdot];
        out.push(truth_for(plan, a, "original", "outside_root", bad));
    }
    // 12. original replaced by a symlink out of the root
    {
        let a = &plan.assets[sel.symlink];
        let p = plan.host(&a.original);
        remove(&p)?;
        std::os::unix::fs::symlink("/etc/hostname", &p)
            .with_context(|| format!("symlink {}", p.display()))?;
        out.push(truth_for(
            plan,
            a,
            "original",
            "outside_root",
            plan.original_db(a),
        ));
    }
    // 14. negative control: trashed asset with a missing original
    {
        let a = &plan.assets[sel.trashed_missing];
        remove(&plan.host(&a.original))?;
        trashed.push(truth_for(
            plan,
            a,
            "original",
            "missing",
            plan.original_db(a),
        ));
    }
    // 8c. a preview bucket directory owned by 4242:4242 mode 0700: every file inside
    {
        let a = &plan.assets[sel.perm_bucket];
        let l = a
            .preview
            .as_ref()
            .ok_or_else(|| anyhow!("asset without preview"))?;
        let bucket = parent_rel(&l.rel).to_string();
        for b in &plan.assets {
            for (kind, l) in thumbs_locs(b) {
                if parent_rel(&l.rel) == bucket {
                    let t = truth_for(plan, b, kind, "permission_denied", plan.db_path(l));
                    if b.trashed {
                        trashed.push(t);
                    } else {
                        out.push(t);
                    }
                }
            }
        }
        for p in &plan.persons {
            if parent_rel(&p.thumb.rel) == bucket {
                out.push(TruthFault {
                    level: "exists".into(),
                    asset_id: Some(p.id.to_string()),
                    owner_id: Some(plan.users[p.owner].id.to_string()),
                    file: Some("person_thumbnail".into()),
                    fault: "permission_denied".into(),
                    db_path: Some(plan.db_path(&p.thumb)),
                    found_at: None,
                    root: None,
                    affected: None,
                });
            }
        }
        let d = plan.media_root.join(&bucket);
        media::chown(&d, 4242, 4242)?;
        media::chmod(&d, 0o700)?;
    }
    // 6. the whole profile folder nested one level too deep
    {
        let prof = plan.media_root.join("profile");
        let tmp = plan.media_root.join(".profile-nesting");
        std::fs::rename(&prof, &tmp)?;
        media::make_dir(&prof)?;
        std::fs::rename(&tmp, prof.join("profile"))?;
        for u in &plan.users {
            out.push(TruthFault {
                level: "exists".into(),
                asset_id: Some(u.id.to_string()),
                owner_id: Some(u.id.to_string()),
                file: Some("profile_image".into()),
                fault: "moved".into(),
                db_path: Some(plan.db_path(&u.profile)),
                found_at: Some(prof.join(&u.profile.rel)),
                root: None,
                affected: None,
            });
        }
    }
    // 13. external library mount absent
    if let Some((li, lib)) = plan.libs.iter().enumerate().find(|(_, l)| !l.exists) {
        let affected = plan
            .assets
            .iter()
            .filter(|a| a.library == Some(li) && !a.trashed)
            .count() as u64;
        out.push(TruthFault {
            level: "exists".into(),
            asset_id: None,
            owner_id: None,
            file: None,
            fault: "mount_missing".into(),
            db_path: None,
            found_at: None,
            root: Some(lib.host.clone()),
            affected: Some(affected),
        });
    }
    Ok((out, trashed))
}

fn refs(a: &Asset) -> u64 {
    1 + [
        &a.preview,
        &a.thumbnail,
        &a.fullsize,
        &a.encoded,
        &a.sidecar,
        &a.edited_thumbnail,
    ]
    .iter()
    .filter(|l| l.is_some())
    .count() as u64
}

/// Build the plan, write the media tree, inject the faults; returns the plan (for the DB) and
/// the ground truth.
pub(crate) fn build(spec: &FixtureSpec, dir: &Path, db_url: &str) -> Result<Built> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let media_root = dir.join("media");
    media::make_dir(&media_root)?;
    let stamp = Utc::now().timestamp_millis().to_string();
    for f in TOP_FOLDERS {
        let d = media_root.join(f);
        media::make_dir(&d)?;
        media::write_file(&d.join(".immich"), stamp.as_bytes())?;
    }

    let mut plan = make_plan(spec, dir, &media_root, &mut rng);
    for l in plan.libs.iter().filter(|l| l.exists) {
        media::make_dir(&l.host)?;
    }
    let sel = if spec.faults {
        let users = plan.users.clone();
        Some(select_faults(&mut plan, &mut rng, &users)?)
    } else {
        None
    };
    write_all(&mut plan)?;
    let (mut faults, trashed_faults) = match &sel {
        Some(sel) => apply_faults(&mut plan, sel)?,
        None => (Vec::new(), Vec::new()),
    };
    faults.extend(content::apply(&mut plan)?);
    faults.extend(crate::phones::apply(&mut plan, Damage::ALL.len())?);
    if spec.generation.upstream_ddl().is_some() {
        add_extras(&mut plan, &mut rng, sel.as_ref(), &faults, &trashed_faults)?;
    }

    let mut files_referenced = (plan.users.len() + plan.persons.len()) as u64;
    let mut trashed_files = 0;
    let mut trashed_assets = 0;
    for a in &plan.assets {
        if a.trashed {
            trashed_assets += 1;
            trashed_files += refs(a);
        } else {
            files_referenced += refs(a);
        }
    }
    let mut maps = vec![(plan.croot.clone(), media_root.clone())];
    maps.extend(plan.libs.iter().map(|l| (l.import.clone(), l.host.clone())));
    let truth = GroundTruth {
        generation: spec.generation,
        db_url: db_url.to_string(),
        media_root,
        container_root: plan.croot.clone(),
        maps,
        as_user: AS_USER.to_string(),
        asset_rows: plan.assets.len() as u64,
        files_referenced,
        faults,
        trashed_faults,
        trashed_assets,
        trashed_files_referenced: trashed_files,
        immich_version: spec.generation.release().map(str::to_string),
        integrity_reports: plan.extras.reports.clone(),
        edited_asset: plan.extras.edit.map(|(_, i)| plan.assets[i].id.to_string()),
    };
    Ok(Built { plan, truth })
}
