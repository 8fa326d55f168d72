#!/usr/bin/env python3
"""Turns `cloudbrain --help` into the troff source of cloudbrain(1).

    man-from-help.py --version VERSION [--binary CLOUDBRAIN] [--output cloudbrain.1[.gz]]

reads the help text from `CLOUDBRAIN --help` (or stdin without --binary) and writes the page to
--output (gzip'd, reproducibly, when the name ends in .gz) or stdout.

The manual's layout (actors/manual.hpp) is what this reads: a heading starts in column 0, a term
is indented by four spaces with its meaning by eight on the lines below it, a paragraph by four,
and an example by eight after a blank line. SYNOPSIS keeps its lines as they are. Anything else
is an error, so that the page cannot drift quietly from the help text.
"""

import argparse
import gzip
import re
import subprocess
import sys


def escape(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def term(line):
    # Commands and options in bold, their arguments (upper-case words) in italics.
    out = []
    for w in line.split(" "):
        font = "I" if re.fullmatch(r"[A-Z][A-Z0-9_:.]*", w) else "B"
        out.append("\\f" + font + escape(w) + "\\fR")
    return " ".join(out)


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def blocks(lines):
    block = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def section(name, lines, out):
    out.append(".SH " + escape(name))
    for block in blocks(lines):
        if name == "SYNOPSIS":
            out.append(".nf")
            out.extend(escape(line.strip()) for line in block)
            out.append(".fi")
            continue
        if all(indent_of(line) >= 8 for line in block):
            out.append(".PP")
            out.append(".RS 4")
            out.append(".nf")
            out.extend(escape(line[8:]) for line in block)
            out.append(".fi")
            out.append(".RE")
            continue
        i = 0
        while i < len(block):
            line = block[i]
            if indent_of(line) != 4:
                raise ValueError(f"{name}: unexpected indentation: {line!r}")
            if i + 1 < len(block) and indent_of(block[i + 1]) == 8:
                out.append(".TP")
                out.append(term(line.strip()))
                i += 1
                while i < len(block) and indent_of(block[i]) == 8:
                    out.append(escape(block[i].strip()))
                    i += 1
                continue
            out.append(".PP")
            while i < len(block) and indent_of(block[i]) == 4 and not (
                i + 1 < len(block) and indent_of(block[i + 1]) == 8
            ):
                out.append(escape(block[i].strip()))
                i += 1


def main():
    ap = argparse.ArgumentParser(description="cloudbrain --help to cloudbrain(1)")
    ap.add_argument("--version", required=True)
    ap.add_argument("--binary")
    ap.add_argument("--output")
    args = ap.parse_args()
    if args.binary:
        text = subprocess.run([args.binary, "--help"], check=True, stdout=subprocess.PIPE,
                              timeout=60, text=True).stdout
    else:
        text = sys.stdin.read()
    lines = text.splitlines()
    if not lines or lines[0] != "NAME":
        sys.exit("man-from-help.py: the help text does not start with NAME")
    out = [
        '.\\" Generated from `cloudbrain --help` by deploy/man-from-help.py; edit actors/manual.cpp.',
        f'.TH CLOUDBRAIN 1 "" "cloudbrain {escape(args.version)}" "cloudbrain manual"',
        # Option and key names are copied from the page: never hyphenate them.
        ".nh",
    ]
    heading, body = None, []
    try:
        for line in lines:
            if line and not line[0].isspace():
                if heading:
                    section(heading, body, out)
                heading, body = line, []
            else:
                body.append(line)
        section(heading, body, out)
    except ValueError as e:
        sys.exit(f"man-from-help.py: {e}")
    page = ("\n".join(out) + "\n").encode()
    if not args.output:
        sys.stdout.buffer.write(page)
    elif args.output.endswith(".gz"):
        # No name and no time stamp in the header: the same page gives the same bytes.
        with open(args.output, "wb") as f, gzip.GzipFile(
            filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0
        ) as z:
            z.write(page)
    else:
        with open(args.output, "wb") as f:
            f.write(page)


if __name__ == "__main__":
    main()
