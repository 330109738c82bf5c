#!/usr/bin/env python3
"""An OCI image archive of a root file system, configured as the Dockerfile's final stage says.

    oci.py config DOCKERFILE
        Print the image config (User, Env, Entrypoint, Cmd, WorkingDir, Labels, ExposedPorts) that
        the final stage of DOCKERFILE gives the image, as JSON.
    oci.py write --rootfs DIR --dockerfile FILE --architecture DEBIAN_ARCH --repository NAME --output FILE
        Write an OCI image layout archive (for `ctr images import`) with DIR as its one layer, and
        print NAME:TAG; the tag is testbed-<first 12 hex digits of the manifest digest>, so other
        content always gets another tag. `--config-json '{"Entrypoint": ["/pause"]}'` instead of
        --dockerfile gives the config directly (for images the Dockerfile does not describe).

The archive is a function of its inputs only: entries in byte order, every mtime 0, owners and
modes from DIR, no user or group names, no timestamps in the config. The final stage must be
`FROM scratch`, one `COPY --from=STAGE DIR/ /` and settings; anything this cannot replay (RUN, a
second COPY, the shell form of ENTRYPOINT) is refused, so the image never silently differs from
what the Dockerfile builds.
"""

import argparse
import hashlib
import io
import json
import os
import shlex
import sys
import tarfile
import tempfile

EPOCH = "1970-01-01T00:00:00Z"
# Debian architecture -> (OCI architecture, variant)
ARCHITECTURES = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "i386": ("386", None),
    "ppc64el": ("ppc64le", None),
    "s390x": ("s390x", None),
}
SETTINGS = {"LABEL", "ENV", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "EXPOSE"}


def fail(message):
    sys.exit(f"oci.py: error: {message}")


def instructions(text):
    """(keyword, arguments) of each instruction, continuation lines joined, comments dropped."""
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.strip().partition(" ")
        current = ""
        yield keyword.upper(), arguments.strip()
    if current:
        fail("the Dockerfile ends inside a continuation line")


def final_stage(text):
    stage = None
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            stage = {"image": arguments.split()[0], "instructions": []}
        elif stage is None:
            fail(f"{keyword} before the first FROM")
        else:
            stage["instructions"].append((keyword, arguments))
    if stage is None:
        fail("no FROM in the Dockerfile")
    return stage


def exec_form(keyword, arguments):
    try:
        words = json.loads(arguments)
    except json.JSONDecodeError:
        words = None
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        fail(f"{keyword} {arguments}: only the exec (JSON) form works without a shell")
    return words


def pairs(keyword, arguments):
    words = shlex.split(arguments)
    if keyword == "ENV" and words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # the legacy `ENV NAME value` form
    if not all("=" in word for word in words):
        fail(f"{keyword} {arguments}: expected NAME=value pairs")
    return [tuple(word.split("=", 1)) for word in words]


def image_config(dockerfile_text):
    stage = final_stage(dockerfile_text)
    if stage["image"] != "scratch":
        fail(f"the final stage starts FROM {stage['image']}; this build replays only FROM scratch")
    copies = [arguments for keyword, arguments in stage["instructions"] if keyword == "COPY"]
    if len(copies) != 1:
        fail(f"the final stage has {len(copies)} COPY instructions; expected one of the whole root")
    words = copies[0].split()
    if len(words) != 3 or not words[0].startswith("--from=") or words[2] != "/":
        fail(f"COPY {copies[0]}: expected COPY --from=STAGE DIR/ /")

    config = {}
    env = {}
    for keyword, arguments in stage["instructions"]:
        if keyword == "COPY":
            continue
        if keyword not in SETTINGS:
            fail(f"{keyword} in the final stage: this build cannot replay it")
        if keyword == "ENV":
            env.update(pairs(keyword, arguments))
        elif keyword == "LABEL":
            config.setdefault("Labels", {}).update(pairs(keyword, arguments))
        elif keyword == "WORKDIR":
            config["WorkingDir"] = os.path.normpath(
                os.path.join(config.get("WorkingDir", "/"), arguments)
            )
        elif keyword == "USER":
            config["User"] = arguments
        elif keyword == "ENTRYPOINT":
            config["Entrypoint"] = exec_form(keyword, arguments)
        elif keyword == "CMD":
            config["Cmd"] = exec_form(keyword, arguments)
        elif keyword == "EXPOSE":
            for port in arguments.split():
                port = port if "/" in port else f"{port}/tcp"
                config.setdefault("ExposedPorts", {})[port] = {}
    if env:
        config["Env"] = [f"{name}={value}" for name, value in env.items()]
    return config


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree(root):
    """Relative paths under root, parents before children, siblings in byte order."""

    def walk(relative):
        directory = os.path.join(root, relative)
        for name in sorted(os.listdir(directory), key=os.fsencode):
            path = os.path.join(relative, name)
            yield path
            full = os.path.join(root, path)
            if os.path.isdir(full) and not os.path.islink(full):
                yield from walk(path)

    yield from walk("")


def write_layer(root, output):
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as layer:
        for path in tree(root):
            full = os.path.join(root, path)
            info = layer.gettarinfo(full, arcname=path)
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isreg():
                with open(full, "rb") as file:
                    layer.addfile(info, file)
            else:
                layer.addfile(info)


def write_archive(output, blobs, index):
    """The OCI image layout as one tar: oci-layout, index.json, blobs/sha256/*."""

    def add(archive, name, data=None, path=None):
        info = tarfile.TarInfo(name)
        info.mtime = 0
        if data is None and path is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        elif path is not None:
            info.size, info.mode = os.path.getsize(path), 0o644
            with open(path, "rb") as file:
                archive.addfile(info, file)
        else:
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))

    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as archive:
        add(archive, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        add(archive, "index.json", canonical(index))
        add(archive, "blobs")
        add(archive, "blobs/sha256")
        for digest, (data, path) in sorted(blobs.items()):
            add(archive, f"blobs/sha256/{digest}", data=data, path=path)


def write(args):
    if args.architecture not in ARCHITECTURES:
        fail(f"no OCI name for the Debian architecture {args.architecture}")
    architecture, variant = ARCHITECTURES[args.architecture]
    if args.dockerfile:
        with open(args.dockerfile) as file:
            config = image_config(file.read())
    else:
        config = json.loads(args.config_json)
        if not isinstance(config, dict):
            fail("--config-json must be a JSON object")

    output_dir = os.path.dirname(os.path.abspath(args.output))
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".oci-") as scratch:
        layer_path = os.path.join(scratch, "layer.tar")
        write_layer(args.rootfs, layer_path)
        layer_digest = sha256_file(layer_path)
        layer_size = os.path.getsize(layer_path)

        platform = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        image = dict(platform)
        image.update(
            {
                "created": EPOCH,
                "config": config,
                "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
                "history": [{"created": EPOCH, "created_by": "tests/testbed/image/oci.py"}],
            }
        )
        config_blob = canonical(image)
        config_digest = hashlib.sha256(config_blob).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_digest}",
                "size": len(config_blob),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}",
                    "size": layer_size,
                }
            ],
        }
        manifest_blob = canonical(manifest)
        manifest_digest = hashlib.sha256(manifest_blob).hexdigest()
        tag = f"testbed-{manifest_digest[:12]}"
        reference = f"{args.repository}:{tag}"
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{manifest_digest}",
                    "size": len(manifest_blob),
                    "platform": platform,
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        blobs = {
            layer_digest: (None, layer_path),
            config_digest: (config_blob, None),
            manifest_digest: (manifest_blob, None),
        }
        partial = os.path.join(scratch, "archive.tar")
        write_archive(partial, blobs, index)
        os.replace(partial, args.output)
    print(reference)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config")
    config.add_argument("dockerfile")
    archive = commands.add_parser("write")
    archive.add_argument("--rootfs", required=True)
    source = archive.add_mutually_exclusive_group(required=True)
    source.add_argument("--dockerfile")
    source.add_argument("--config-json")
    archive.add_argument("--architecture", required=True)
    archive.add_argument("--repository", required=True)
    archive.add_argument("--output", required=True)
    args = parser.parse_args()
    if args.command == "config":
        with open(args.dockerfile) as file:
            print(json.dumps(image_config(file.read()), indent=2, sort_keys=True))
    else:
        write(args)


if __name__ == "__main__":
    main()
