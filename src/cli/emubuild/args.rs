//! `emubuild`'s command line (clap derive), apart from the code that runs it. Every
//! environment variable emubuild reads is declared here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::binfmt::fs::DEFAULT_ROOT;
use crate::cli::common::{EmulatorArgs, RegistryArgs, TopArgs};
use crate::sandbox::Network;
use crate::snapshotter::Driver;

/// Run commands for foreign CPU architectures in a namespaced chroot of a base image, and
/// write what they changed as multi-arch OCI images.
#[derive(Debug, Parser)]
#[command(name = "emubuild", version)]
pub struct Cli {
    /// Where images, layers and working containers are kept (default: /var/lib/emubuild as
    /// root, else $XDG_DATA_HOME/emubuild).
    #[arg(long, global = true, env = "EMUBUILD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The binfmt_misc mount checked before running foreign programs.
    #[arg(long, global = true, env = "BINFMTCTL_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR", hide = true)]
    pub binfmt_root: PathBuf,
    /// How steps are snapshotted: overlayfs, falling back to copying where it cannot hold a
    /// step (auto); overlayfs only; copying only.
    #[arg(
        long,
        global = true,
        env = "EMUBUILD_DRIVER",
        value_enum,
        default_value = "auto",
        hide_short_help = true
    )]
    pub driver: Driver,
    /// Unix time recorded in history and configs, and the newest file time in layers
    /// (reproducible builds).
    #[arg(
        long,
        global = true,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        hide_short_help = true
    )]
    pub source_date_epoch: Option<i64>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub global: TopArgs,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a working container from a base image, one per platform.
    From(FromArgs),
    /// Run a command in a working container, under emulation; its changes become a step.
    Run(RunArgs),
    /// List working containers.
    Ls(LsArgs),
    /// Remove working containers (layers shared with others stay).
    Rm(RmArgs),
    /// Copy files from the host into the working container (every platform), as a new step.
    Copy(CopyArgs),
    /// Write the working container as images, one per platform, joined by an OCI image index.
    Commit(CommitArgs),
    /// Build a Containerfile for several platforms at once (one index), under emulation.
    Build(BuildCmdArgs),
    /// Show an image or index (a layout, an archive, a registry): platforms, layers, history.
    Inspect(InspectArgs),
    /// Push a local image or index (oci:DIR[:TAG], oci-archive:FILE[:TAG]) to a registry:
    /// blobs, child manifests, then the index; by tag, or by digest when DEST has no tag.
    Push(PushArgs),
    /// Join images (by digest, from registries or layouts) into a manifest list, annotate it,
    /// and push it.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Point tags at an image or index by digest: within a registry no layer moves (manifests
    /// are copied, blobs mounted); across registries blobs are streamed, never unpacked.
    Tag(TagArgs),
    /// Check credentials against a registry, then save them (auth file, mode 0600).
    Login(LoginArgs),
    /// Remove saved credentials for a registry.
    Logout(LogoutArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the manual page (roff).
    Man,
    /// One platform of a multi-platform `run` (started by emubuild itself; reads its request
    /// as JSON on stdin).
    #[command(name = "__run-platform", hide = true)]
    RunPlatform,
}

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `copy` arguments.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Mode of the copied files and directories (octal, e.g. 0755).
    #[arg(long, value_name = "MODE")]
    pub chmod: Option<String>,
    /// Owner of the copied files, user[:group] (names from the image's /etc/passwd).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub chown: Option<String>,
    /// Host files or directories, then the destination inside the container.
    #[arg(required = true, num_args = 2.., value_name = "SRC... DEST")]
    pub paths: Vec<String>,
}

/// `commit` arguments.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Layer compression: gzip[:LEVEL] (default), zstd[:LEVEL], none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Default command: a JSON array, or words split on spaces.
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,
    /// Entrypoint: a JSON array, or words split on spaces ('' clears it).
    #[arg(long, value_name = "ENTRYPOINT")]
    pub entrypoint: Option<String>,
    /// Set an environment variable in the image.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Set a label.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Working directory of the image.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User of the image.
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Push an index even for a single platform (to a registry; otherwise its image manifest
    /// is pushed alone, as `docker push` does).
    #[arg(long)]
    pub index: bool,
    /// Write the digest DEST now names to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG] (TAG defaults to `latest`), or a registry:
    /// [docker://]HOST/REPO:TAG, or HOST/REPO to push by digest only.
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], or a registry reference
    /// ([docker://][HOST/]REPO[:TAG][@DIGEST]).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    #[arg(value_name = "SRC")]
    pub src: String,
    /// A registry reference: HOST/REPO:TAG, or HOST/REPO to push by digest only.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// Write the pushed digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Push an index of one image as an index (otherwise its image manifest goes alone).
    #[arg(long)]
    pub index: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Make a manifest list (kept in the store) from images.
    Create(ManifestCreateArgs),
    /// Add images to a list.
    Add(ManifestAddArgs),
    /// Remove an entry from a list, by digest.
    Remove(ManifestRemoveArgs),
    /// Change an entry's platform or annotations, or (`--index`) the list's annotations.
    Annotate(ManifestAnnotateArgs),
    /// Print a list's JSON (a local list's, or a registry's exact bytes).
    Inspect(ManifestInspectArgs),
    /// Push a list: every child the destination lacks, then the list.
    Push(ManifestPushArgs),
    /// Remove local lists.
    Rm(ManifestRmArgs),
    /// List the local lists.
    Ls(ManifestLsArgs),
}

/// Which images of an index an argument brings.
#[derive(Debug, Args, Clone)]
pub struct PickArgs {
    /// From an index, take every image.
    #[arg(long)]
    pub all: bool,
    /// From an index, take the image for this platform.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `manifest create` arguments.
#[derive(Debug, Args)]
pub struct ManifestCreateArgs {
    /// The list's name (usually the reference it will be pushed to).
    #[arg(value_name = "LIST")]
    pub list: String,
    /// Images: registry references (by tag or digest), oci:DIR[:TAG], oci-archive:FILE[:TAG].
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub pick: PickArgs,
    /// Start from the existing list of that name, or from the index LIST names.
    #[arg(long)]
    pub amend: bool,
}

/// `manifest add` arguments.
#[derive(Debug, Args)]
pub struct ManifestAddArgs {
    /// The list.
    #[arg(value_name = "LIST")]
    pub list: String,
    /// Images to add.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub pick: PickArgs,
}

/// `manifest remove` arguments.
#[derive(Debug, Args)]
pub struct ManifestRemoveArgs {
    /// The list.
    #[arg(value_name = "LIST")]
    pub list: String,
    /// The entry's digest.
    #[arg(value_name = "DIGEST")]
    pub digest: String,
}

/// `manifest annotate` arguments.
#[derive(Debug, Args)]
pub struct ManifestAnnotateArgs {
    /// The list.
    #[arg(value_name = "LIST")]
    pub list: String,
    /// The entry: its digest, or an image whose manifest is in the list.
    #[arg(value_name = "IMAGE|DIGEST", required_unless_present = "index")]
    pub entry: Option<String>,
    /// Annotate the list itself (with `--annotation`).
    #[arg(long)]
    pub index: bool,
    /// The operating system.
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// The architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The variant ('' removes it).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// The OS version (`os.version`).
    #[arg(long, value_name = "VERSION")]
    pub os_version: Option<String>,
    /// OS features, comma-separated (`os.features`).
    #[arg(long, value_name = "FEATURES")]
    pub os_features: Option<String>,
    /// An annotation, K=V.
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotations: Vec<String>,
}

/// `manifest inspect` arguments.
#[derive(Debug, Args)]
pub struct ManifestInspectArgs {
    /// A local list, or an image reference (its exact bytes).
    #[arg(value_name = "LIST|REF")]
    pub target: String,
    /// With each child's layers and size.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// The list formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    /// An OCI image index.
    Oci,
    /// A Docker manifest list (schema 2).
    Docker,
}

/// `manifest push` arguments.
#[derive(Debug, Args)]
pub struct ManifestPushArgs {
    /// The list.
    #[arg(value_name = "LIST")]
    pub list: String,
    /// Where to (default: the list's name): a registry reference, oci:DIR:TAG, oci-archive:FILE:TAG.
    #[arg(value_name = "DEST")]
    pub dest: Option<String>,
    /// The list's format.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: ListFormat,
    /// Write the list's digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Remove the local list once pushed.
    #[arg(long)]
    pub rm: bool,
    /// Merge with the registry's list just before writing, and check again after (for jobs
    /// adding to one list at once).
    #[arg(long)]
    pub amend_remote: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `manifest rm` arguments.
#[derive(Debug, Args)]
pub struct ManifestRmArgs {
    /// The lists.
    #[arg(value_name = "LIST", required = true)]
    pub lists: Vec<String>,
}

/// `manifest ls` arguments.
#[derive(Debug, Args)]
pub struct ManifestLsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tag` arguments.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image or index: a registry reference, oci:DIR[:TAG], oci-archive:FILE[:TAG].
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to point at it: registry references (by tag, or a repository to copy into by
    /// digest), oci:DIR:TAG.
    #[arg(value_name = "DEST", required = true)]
    pub dests: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `login` arguments.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`docker.io`, `127.0.0.1:5000`).
    #[arg(value_name = "HOST")]
    pub host: String,
    /// The user name.
    #[arg(long, short = 'u', value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from stdin (else it is asked for on the terminal).
    #[arg(long)]
    pub password_stdin: bool,
}

/// `logout` arguments.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry.
    #[arg(value_name = "HOST")]
    pub host: String,
}

/// `from` arguments.
#[derive(Debug, Args)]
pub struct FromArgs {
    /// Platforms, comma-separated (`linux/arm64,linux/arm/v7`); default: the image's own, or the host's.
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// Name of the working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Replace an existing working container of that name.
    #[arg(long)]
    pub replace: bool,
    /// A registry reference ([docker://][HOST/]REPO[:TAG][@DIGEST]; `alpine` is
    /// docker.io/library/alpine:latest), oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// rootfs:FILE (tar, .gz, .xz, .zst) or scratch.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `run` arguments.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Working container.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Platforms to run on (default: every platform of the working container).
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// Make the working container from this image first (reused if it exists with the same
    /// base). With no working container and no `--from`: `$EMUBUILD_BASE`, else alpine:latest.
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,
    /// The base a run with no working container and no `--from` starts from.
    #[arg(
        long,
        env = "EMUBUILD_BASE",
        default_value = "alpine:latest",
        value_name = "IMAGE",
        hide = true
    )]
    pub default_base: String,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Set an environment variable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// user[:group], names or numbers from the image.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Network: the host's, or none (only `lo`).
    #[arg(long, value_enum, default_value = "host")]
    pub network: Network,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Where emulators come from when a rootless run registers its own handlers.
    #[command(flatten, next_help_heading = "Emulators (rootless runs)")]
    pub emulators: EmulatorArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `ls` arguments.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Working containers to remove.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Remove every working container.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// `build` arguments.
#[derive(Debug, Args)]
pub struct BuildCmdArgs {
    /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile); with
    /// `PLATFORM=FILE`, that platform's own file.
    #[arg(short = 'f', long = "file", value_name = "[PLATFORM=]FILE")]
    pub files: Vec<String>,
    /// Target platforms (default: this machine's).
    #[arg(long, value_name = "PLATFORM[,PLATFORM...]")]
    pub platform: Option<String>,
    /// A build argument; `PLATFORM:K=V` sets it for that platform only.
    #[arg(long = "build-arg", value_name = "[PLATFORM:]K=V")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Where to write the result (oci:DIR:TAG, oci-archive:FILE:TAG, a registry reference);
    /// more than one: the others get the same digest.
    #[arg(short = 't', long = "tag", value_name = "DEST")]
    pub tags: Vec<String>,
    /// A label on every image.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Bind HOST:CTR[:ro] into every RUN (never into a layer).
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Layer compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Run every step again (the step cache is dropped).
    #[arg(long)]
    pub no_cache: bool,
    /// How many platforms build at once (default: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub jobs: usize,
    /// When a platform fails, build the others anyway and print how each ended.
    #[arg(long)]
    pub keep_going: bool,
    /// Write an index of the platforms that built when others failed (names the missing).
    #[arg(long)]
    pub allow_partial: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The build context.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}
