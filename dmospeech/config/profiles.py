"""Profiles applied to params.yaml in place: a ruamel.yaml round trip that merges a profile's values
into the params file as `deep_merge` merges data, keeping the params file's comments with their keys."""
from __future__ import annotations

import io
import os

import yaml

from dmospeech.config.parse import ConfigError, deep_merge, read_yaml


def _round_trip_yaml():
    """ruamel.yaml in round-trip mode, in params.yaml's style (comments, quotes and flow style kept)."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096  # never re-wrap a line (a wrapped flow mapping would split "key:" from its value)
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _comment_slot(node, key):
    """(container, key, index) of the comment token after `node[key]`'s last line: ruamel keeps the
    comment lines that follow a block value there (they belong to the next key)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    value = node[key]
    if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not value.fa.flow_style():
        return _comment_slot(value, list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)
    return node, key, 2 if isinstance(node, CommentedMap) else 0


def _pop_following(node, key) -> str:
    """Detach the comment/blank lines after `node[key]` (keeping the end-of-line comment); returns them."""
    holder, k, i = _comment_slot(node, key)
    entry = holder.ca.items.get(k)
    token = entry[i] if entry else None
    if token is None:
        return ""
    eol, _, following = token.value.partition("\n")
    if eol:
        token.value = eol + "\n"
    else:
        entry[i] = None
    return following


def _push_following(node, key, following: str) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if following:
        holder, k, i = _comment_slot(node, key)
        entry = holder.ca.items.setdefault(k, [None, None, None, None])
        if entry[i] is None:
            entry[i] = CommentToken("\n" + following, CommentMark(0), None)
        else:
            entry[i].value = entry[i].value.rstrip("\n") + "\n" + following


def merge_round_trip(base, overlay) -> None:
    """`overlay` merged into the round-trip-loaded `base` in place, as `deep_merge` merges data (mappings
    recursively, lists and scalars replaced). base's comments stay with their keys: the lines after a
    replaced (or last, when a key is appended) value move to the new value's end, and the overlay's lines
    after its values (its next keys' comments) are dropped."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_round_trip(base[key], value)
            continue
        anchor = key if key in base else (list(base)[-1] if len(base) else None)
        following = _pop_following(base, anchor) if anchor is not None else ""
        base[key] = value
        _pop_following(base, key)
        _push_following(base, key, following)


def apply_profile(params_path: str | os.PathLike, *profile_paths: str | os.PathLike) -> str:
    """The text of `params_path` with each of `profile_paths` merged in, in order (a later overlay wins, so
    `paper` then `paper_smoke` layers the smoke's caps on the paper's widths), comments kept, and a header
    line naming the profiles; ConfigError if the round trip would change any value (the text is not
    written here)."""
    if not profile_paths:
        raise ConfigError("apply_profile: name at least one profile")
    rt = _round_trip_yaml()
    with open(params_path, encoding="utf-8") as f:
        params = rt.load(f.read())
    expected = read_yaml(params_path)
    for profile_path in profile_paths:
        with open(profile_path, encoding="utf-8") as f:
            merge_round_trip(params, rt.load(f.read()) or {})
        expected = deep_merge(expected, read_yaml(profile_path))
    out = io.StringIO()
    rt.dump(params, out)
    names = ", ".join(str(p) for p in profile_paths)
    header = f"# params.yaml with profile{'s' if len(profile_paths) > 1 else ''} {names} applied by `dmospeech profile`\n"
    text = out.getvalue() if out.getvalue().startswith(header) else header + out.getvalue()
    if yaml.safe_load(text) != expected:  # what load_params reads
        raise ConfigError(f"the round trip of {params_path} with {names} changed values")
    return text
