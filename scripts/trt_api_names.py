"""Write the public names of the installed TensorRT Python module to tests/data/tensorrt_api.json.

tests/test_tensorrt_api.py checks every TensorRT name that export/tensorrt.py, export/triton.py and
infer/backend_trt.py use against each list kept there (one per TensorRT release line: "10.x",
"11.x"), so code that uses a name one of them lacks fails a test on any machine, GPU or not.

Run it where tensorrt imports (the wheel is enough, no GPU needed), once per release line:

    pip install 'tensorrt-cu13>=10.14,<11' && python scripts/trt_api_names.py    # replaces "10.x"
    pip install 'tensorrt-cu13>=11,<12' && python scripts/trt_api_names.py       # replaces "11.x"
    python scripts/trt_api_names.py --key 11.4                                    # or adds its own entry

It records `dir()` of the module and of each class in it (enum members included), and says in the
entry's "source" which tensorrt it came from. Other entries are kept as they are.
"""

from __future__ import annotations

import argparse
import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "tensorrt_api.json"


def public(names) -> list[str]:
    return sorted({n for n in names if not n.startswith("_")})


def introspect(trt) -> dict[str, list[str]]:
    """{"tensorrt": module names, class name: its attribute names (methods, properties, enum members)}."""
    names = {"tensorrt": public(dir(trt)) + ["__version__"]}
    for name in names["tensorrt"]:
        obj = getattr(trt, name, None)
        if isinstance(obj, type):
            names[name] = public([*dir(obj), *getattr(obj, "__members__", {})])
    return names


def dump(data: dict) -> str:
    """JSON with one line per class, so a diff shows which class changed."""
    lines = ["{", f'  "about": {json.dumps(data["about"])},', '  "versions": {']
    versions = sorted(data["versions"].items())
    for i, (key, entry) in enumerate(versions):
        lines += [f"    {json.dumps(key)}: {{", f'      "source": {json.dumps(entry["source"])},', '      "names": {']
        classes = sorted(entry["names"].items())
        for j, (cls, members) in enumerate(classes):
            comma = "," if j < len(classes) - 1 else ""
            lines.append(f"        {json.dumps(cls)}: {json.dumps(members)}{comma}")
        lines += ["      }", "    }" + ("," if i < len(versions) - 1 else "")]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", help="the entry to write (default: MAJOR.x of the installed tensorrt)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()

    import tensorrt as trt

    key = args.key or f"{trt.__version__.split('.')[0]}.x"
    data = json.loads(args.out.read_text()) if args.out.exists() else {"about": "", "versions": {}}
    data["versions"][key] = {
        "source": f"dir() of tensorrt {trt.__version__} (scripts/trt_api_names.py)",
        "names": introspect(trt),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(data))
    print(
        f"wrote {sum(map(len, data['versions'][key]['names'].values()))} names of tensorrt "
        f"{trt.__version__} as {key!r} to {args.out}"
    )


if __name__ == "__main__":
    main()
