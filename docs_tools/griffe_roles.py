"""A griffe extension for the API page: the docstrings' Sphinx roles as cross-references.

The package's docstrings name other objects the Sphinx way, ``:class:`Registry```,
``:func:`output_name```. mkdocstrings does not read roles, so without this they show as
literal text. Once the package is loaded, every role is rewritten into an autorefs link,
``[`Registry`][pyrovae.registry.Registry]``, when its target is an object the API page shows
(public, documented); otherwise into plain code. A target is looked up as written, then
relative to the object's class and module, then through the module's imports, then as the
unique object of the package with that name.
"""

import re

import griffe

ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|data|exc|obj|const):`~?\.?([^`<>]+?)`")


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the loaded package."""

    def on_package(self, *, pkg, **kwargs) -> None:
        objects = {}
        self._collect(pkg, objects)
        by_name = {}
        for path in objects:
            by_name.setdefault(path.rsplit(".", 1)[-1], []).append(path)
        for obj in list(objects.values()):
            if obj.docstring is not None:
                obj.docstring.value = ROLE.sub(lambda m, o=obj: self._link(m, o, objects, by_name), obj.docstring.value)

    def _collect(self, obj, objects) -> None:
        if obj.is_alias:
            return
        objects[obj.path] = obj
        for member in obj.members.values():
            if not member.is_alias:
                self._collect(member, objects)

    @staticmethod
    def _shown(path: str, objects) -> bool:
        """Whether the API page renders ``path``: public, and a module (not a package: the page
        lists the modules of every package) or a documented object."""
        obj = objects.get(path)
        if obj is None or not _public(path):
            return False
        if obj.is_module:
            return not (obj.is_package or obj.is_subpackage)
        return bool(obj.docstring and obj.docstring.value)

    def _link(self, match, obj, objects, by_name) -> str:
        target = match.group(2).strip()
        label = target.rsplit(".", 1)[-1] if match.group(0).split("`")[1].startswith("~") else target
        for path in self._candidates(target, obj, by_name):
            if self._shown(path, objects):
                return f"[`{label}`][{path}]"
        return f"`{label}`"

    @staticmethod
    def _candidates(target: str, obj, by_name):
        yield target
        scope = obj if obj.is_class or obj.is_module else obj.parent
        while scope is not None:
            yield f"{scope.path}.{target}"
            scope = scope.parent
        module = obj.module
        head, _, rest = target.partition(".")
        imported = module.members.get(head)
        if imported is not None and imported.is_alias:
            yield imported.target_path + (f".{rest}" if rest else "")
        matches = by_name.get(target.rsplit(".", 1)[-1], [])
        suffix = [p for p in matches if p.endswith("." + target) or p == target]
        if len(suffix) == 1:
            yield suffix[0]
