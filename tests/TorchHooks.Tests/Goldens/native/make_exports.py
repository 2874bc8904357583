#!/usr/bin/env python3
"""Export tables of the native libraries TorchHooks binds to, per OS, as the runtime packages ship them.

Writes exports.json beside this script: for each runtime identifier (linux-x64, win-x64, osx-arm64), the
exported names of libtorch_cpu (only the namespaces TorchHooks binds from: at::autocast and at::TensorBase,
filtered by the PATTERNS below) and of TorchSharp's LibTorchSharp (every THS* export). The test
NativeExportTests checks every NativeSymbol TorchHooks declares against this file, so a wrong name or a wrong
signature in a C++ mangled name (MSVC encodes the return type) fails on Linux without a Windows or macOS machine.

Run it again when TorchSharp or libtorch is upgraded (the versions come from Directory.Packages.props), or when a
binding needs a namespace the patterns don't cover:

    python3 tests/TorchHooks.Tests/Goldens/native/make_exports.py [--packages DIR]

It restores the packages with `dotnet restore` into a private folder (DIR, or a temporary one; the user's NuGet
cache is not touched) and reads the tables with binutils' `nm` (ELF) and `objdump -p` (PE) and LLVM's `llvm-nm`
(Mach-O): `apt-get install binutils llvm`.
"""
import argparse, json, os, re, subprocess, sys, tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))

# Which exports of libtorch_cpu are kept: the C++ namespaces TorchHooks binds from, in both manglings.
PATTERNS = {
    "torch_cpu": [
        r"^_ZN2at8autocast",           # Itanium: at::autocast::*
        r"@autocast@at@@",             # MSVC:    at::autocast::*
        r"^_ZNK?2at10TensorBase",      # Itanium: at::TensorBase::*
        r"@TensorBase@at@@",           # MSVC:    at::TensorBase::*
    ],
    "LibTorchSharp": [r"^THS"],        # TorchSharp's whole C API
}

# Runtime identifier -> (package id, version property, {library: file in runtimes/<rid>/native}, reader)
RUNTIMES = {
    "linux-x64": {"torch_cpu": ("libtorch-cpu-linux-x64", "LibTorchVersion", "libtorch_cpu.so"),
                  "LibTorchSharp": ("TorchSharp", "TorchSharpVersion", "libLibTorchSharp.so"), "format": "elf"},
    "win-x64": {"torch_cpu": ("libtorch-cpu-win-x64", "LibTorchVersion", "torch_cpu.dll"),
                "LibTorchSharp": ("TorchSharp", "TorchSharpVersion", "LibTorchSharp.dll"), "format": "pe"},
    "osx-arm64": {"torch_cpu": ("libtorch-cpu-osx-arm64", "LibTorchVersion", "libtorch_cpu.dylib"),
                  "LibTorchSharp": ("TorchSharp", "TorchSharpVersion", "libLibTorchSharp.dylib"), "format": "macho"},
}


def versions():
    props = ET.parse(os.path.join(ROOT, "Directory.Packages.props")).getroot()
    return {el.tag: el.text for group in props.findall("PropertyGroup") for el in group}


def restore(packages_dir, wanted):
    os.makedirs(packages_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as proj:
        items = "\n".join(f'    <PackageDownload Include="{pid}" Version="[{ver}]" />' for pid, ver in sorted(wanted))
        with open(os.path.join(proj, "exports.csproj"), "w") as f:
            f.write(f"""<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net8.0</TargetFramework><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally></PropertyGroup>
  <ItemGroup>
{items}
  </ItemGroup>
</Project>
""")
        subprocess.run(["dotnet", "restore", "--packages", packages_dir], cwd=proj, check=True)


def exports(path, fmt):
    if fmt == "elf":
        out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    elif fmt == "pe":
        out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=True).stdout
        table = out.split("[Ordinal/Name Pointer] Table", 1)
        if len(table) != 2:
            sys.exit(f"{path}: no export name table in objdump -p output")
        names = [m.group(1) for m in re.finditer(r"^\s*\[\s*\d+\]\s+(\S+)\s*$", table[1], re.M)]
    else:
        out = subprocess.run(["llvm-nm", "-g", "--defined-only", path], capture_output=True, text=True, check=True).stdout
        # Mach-O symbols carry a leading underscore that dlsym() adds itself: strip it.
        names = [line.split()[-1][1:] for line in out.splitlines() if line.strip()]
    return sorted(set(names))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", help="folder to restore the packages into (default: a temporary folder)")
    args = ap.parse_args()
    ver = versions()
    wanted = {(spec[0], ver[spec[1]]) for rt in RUNTIMES.values() for lib, spec in rt.items() if lib != "format"}
    tmp = None
    packages = args.packages
    if not packages:
        tmp = tempfile.TemporaryDirectory()
        packages = tmp.name
    restore(packages, wanted)

    result = {
        "generated_by": "tests/TorchHooks.Tests/Goldens/native/make_exports.py",
        "versions": {"TorchSharp": ver["TorchSharpVersion"], "libtorch": ver["LibTorchVersion"]},
        "patterns": PATTERNS,
        "runtimes": {},
    }
    for rid, rt in RUNTIMES.items():
        entry = {}
        for lib, (pid, vprop, fname) in ((k, v) for k, v in rt.items() if k != "format"):
            path = os.path.join(packages, pid.lower(), ver[vprop], "runtimes", rid, "native", fname)
            if not os.path.exists(path):
                sys.exit(f"{path} is missing from the restored package {pid} {ver[vprop]}")
            pats = [re.compile(p) for p in PATTERNS[lib]]
            names = [n for n in exports(path, rt["format"]) if any(p.search(n) for p in pats)]
            entry[lib] = {"package": f"{pid} {ver[vprop]}", "file": f"runtimes/{rid}/native/{fname}", "exports": names}
            print(f"{rid:10} {lib:14} {len(names):5} exports kept ({pid} {ver[vprop]})")
        result["runtimes"][rid] = entry

    with open(os.path.join(HERE, "exports.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
