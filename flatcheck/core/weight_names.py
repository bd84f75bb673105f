"""Do a model folder's weight files hold the tensors its config's model has? Checked from the safetensors headers
against the model built on the meta device, before any weight is read.

diffusers loads by name: a tensor renamed in a header (or a weight file beside the wrong config) leaves the model's
tensor of that name uninitialised (on the meta device with low_cpu_mem_usage, the default: the run then fails
deep inside with "Tensor.item() cannot be called on meta tensors"; randomly initialised without it: wrong numbers,
no error) and drops the unknown one, with two warnings. Here it is one InputError naming both (issue 26).
A header cannot tell a renamed tensor from a real one, so this needs the model's own names (torch and diffusers):
`flatcheck info`, which imports neither, does not check it; every command that loads or plans a model does.
"""

from __future__ import annotations

import re

from ..errors import InputError

# `part` below is a core.checkpoint.Part (its component, folder, config and weight files); not imported here,
# since core.checkpoint calls these checks while it loads.


def check_weight_names(part, module) -> None:
    """InputError unless the part's weight files name (and shape) exactly the tensors `module` (built from the
    part's config, on any device) loads. A single file is converted by core.single_file; a pickle has no header
    (diffusers' own loading info is checked after it loads: `refuse_loading_info`)."""
    if part.single_file is not None:
        return
    files = part.loaded_weights()
    if any(w.tensors is None for w in files):
        return
    stored = {name: entry for w in files for name, entry in w.tensors.items()}
    names = dict.fromkeys(stored)
    if len(files) == 1:  # diffusers renames legacy attention tensors (query -> to_q ...) of unsharded files
        module._fix_state_dict_keys_on_load(names)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(names))
    unexpected = _unexpected(type(module), set(names) - set(expected))
    if missing or unexpected:
        raise names_error(part, missing, unexpected)
    for name, entry in stored.items():
        if name in expected and tuple(expected[name].shape) != tuple(entry.shape):
            raise InputError(
                f"'{_where(part)}' holds {name} shaped {list(entry.shape)}, but the {part.class_name} of "
                f"'{part.folder / 'config.json'}' has it {list(expected[name].shape)}: weights of another model"
            )


def refuse_loading_info(part, info: dict) -> None:
    """diffusers' from_pretrained(output_loading_info=True) verdict: InputError on a missing or unused tensor."""
    missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    if missing or unexpected:
        raise names_error(part, missing, unexpected)


def _unexpected(cls, names: set[str]) -> list[str]:
    """The stored names the model has no place for, less those its class ignores by design (as diffusers does)."""
    for pattern in getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or ():
        names = {n for n in names if re.search(pattern, n) is None}
    return sorted(names)


def _where(part) -> str:
    files = part.loaded_weights()
    return str(files[0].path) if len(files) == 1 else f"the {len(files)} weight files of '{part.folder}'"


def names_error(part, missing: list[str], unexpected: list[str]) -> InputError:
    said = []
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        said.append(f"has no tensor '{missing[0]}'{more}")
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        said.append(f"holds '{unexpected[0]}'{more}, which the model has no place for")
    return InputError(
        f"'{_where(part)}' {' and '.join(said)}: its weights do not match the {part.class_name} of "
        f"'{part.folder / 'config.json'}' (diffusers would leave the missing ones uninitialised)"
    )
