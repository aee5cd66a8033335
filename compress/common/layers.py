"""General helpers over any ``paddle.nn.Layer``: probing forward passes, reaching sublayers
by path, replacing them, counting parameters. Blocks, DropPath, FLOPs, surgery and the criteria
all use these.

A path is what ``named_sublayers()`` prints: the registered names joined by dots. Zoos register
names that contain dots themselves (``add_sublayer("_blocks.2.", ...)``), so a path is resolved
by the registered names (:func:`resolve_path`), never by splitting on dots. A layer may also be
held outside the sublayer tree, in a plain Python list, tuple or dict attribute that ``forward``
iterates (``blk = self.add_sublayer(name, Block()); self.block_list.append(blk)``):
:func:`replace_layer` replaces every such reference too, so the forward pass really calls the
replacement."""
from __future__ import annotations

import paddle
import paddle.nn as nn

_CONTAINERS = (nn.LayerList, nn.Sequential)
# Layer attributes that never hold user references to sublayers (parameters, buffers, hooks)
_INTERNAL = frozenset({"_parameters", "_buffers", "_forward_pre_hooks", "_forward_post_hooks",
                       "_non_persistable_buffer_names_set", "_buffers_nonpersistable", "_loaddict_holder",
                       "_casted_by_pure_fp16", "_state_dict_hooks", "_forward_pre_hooks_with_kwargs_flag",
                       "_forward_post_hooks_with_kwargs_flag"})


def probe_forward(model, x, handles=()):
    """One forward pass in eval mode without gradients (for hooks to observe); then the hooks
    in ``handles`` are removed and the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()


def _resolve(layer, rest: str):
    """[(parent, key), ...] from ``layer`` down to the sublayer at ``rest``, by registered names (a name may
    contain dots: the longest matching name is tried first); None if no sublayer has that path."""
    subs = getattr(layer, "_sub_layers", None)
    if not isinstance(subs, dict):
        return None
    if rest in subs and isinstance(subs[rest], nn.Layer):
        return [(layer, rest)]
    for key in sorted((k for k in subs if rest.startswith(k + ".")), key=len, reverse=True):
        child = subs[key]
        if isinstance(child, nn.Layer):
            chain = _resolve(child, rest[len(key) + 1:])
            if chain is not None:
                return [(layer, key)] + chain
    return None


def resolve_path(root, path: str):
    """(parent layer, registered name) of the sublayer at ``path``; None if there is none."""
    chain = _resolve(root, path) if path else None
    return chain[-1] if chain else None


def get_sublayer(root, dotted: str):
    """The sublayer at a path such as ``stages.1.0`` (registered names; digits also index a
    LayerList/Sequential, and a plain attribute is found as before)."""
    if not dotted:
        return root
    found = resolve_path(root, dotted)
    if found is not None:
        parent, key = found
        return parent._sub_layers[key]
    layer = root
    for part in dotted.split("."):
        layer = layer[int(part)] if part.isdigit() and isinstance(layer, _CONTAINERS) else getattr(layer, part)
    return layer


def _swap_in(value, old, new, undo: list, depth: int = 0):
    """``value`` (a list, tuple or dict, nested up to 3 deep) with every ``old`` replaced by ``new``: lists and
    dicts in place (recorded in ``undo``), a tuple rebuilt (returned; None: unchanged)."""
    if depth > 3:
        return None
    if isinstance(value, (list, dict)):
        for k, v in list(enumerate(value) if isinstance(value, list) else value.items()):
            if v is old:
                undo.append((value, k, old))
                value[k] = new
            else:
                rebuilt = _swap_in(v, old, new, undo, depth + 1)
                if rebuilt is not None:
                    undo.append((value, k, v))
                    value[k] = rebuilt
    elif isinstance(value, tuple):
        items, changed = [], False
        for v in value:
            rebuilt = new if v is old else _swap_in(v, old, new, undo, depth + 1)
            changed |= rebuilt is not None
            items.append(v if rebuilt is None else rebuilt)
        if changed:
            return type(value)(items) if type(value) is tuple else value.__class__(*items)
    return None


def replace_layer(root, path: str, new) -> list:
    """Put ``new`` where the sublayer at ``path`` is: in its parent's registered sublayers and in every other
    place of ``root``'s layers that holds the same object (a second registered name, a plain list, tuple or
    dict attribute). Returns the undo record for :func:`restore_layers`."""
    found = resolve_path(root, path)
    if found is None:
        raise KeyError(path)
    parent, key = found
    old = parent._sub_layers[key]
    undo: list = []
    for layer in [root, *root.sublayers()]:
        for name, value in list(vars(layer).items()):
            if name in _INTERNAL:
                continue
            if value is old and name != "_sub_layers":
                undo.append((layer.__dict__, name, old))
                layer.__dict__[name] = new
                continue
            rebuilt = _swap_in(value, old, new, undo)
            if rebuilt is not None:
                undo.append((layer.__dict__, name, value))
                layer.__dict__[name] = rebuilt
    return undo


def restore_layers(undo: list) -> None:
    """Undo :func:`replace_layer` (records applied in reverse)."""
    for container, key, value in reversed(undo):
        container[key] = value


def set_sublayer(root, dotted: str, new) -> None:
    """Put ``new`` at a path, in place (every reference to the old layer inside ``root`` included)."""
    try:
        replace_layer(root, dotted, new)
        return
    except KeyError:   # not a registered path: a plain attribute or an index, as before
        pass
    parent = root
    *head, last = dotted.split(".")
    for part in head:
        parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def count_params(layer) -> int:
    """Parameter elements of ``layer`` (trainable or not)."""
    return int(sum(int(p.numel()) for p in layer.parameters()))
