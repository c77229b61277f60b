"""PDB / mmCIF files via gemmi: RNA chains of model 1, full (SEQRES/entity) sequence, C1' per residue.

Modified residues map to their parent nucleotide through MODRES / ``_pdbx_struct_mod_residue``, else gemmi's
residue table; a residue with no A/C/G/U parent becomes N (``unknown_nucleotide=mask``, noted on the target)
or a per-target error (``reject``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import gemmi
import numpy as np

from rna_hpc.data.targets import Skip, Target, TargetError, enum_value, normalize_sequence
from rna_hpc.errors import InputError

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
C1_NAMES = ("C1'", "C1*")  # C1* is the pre-2007 PDB spelling
NUCLEOTIDE_PARENTS = {"GTP": "G", "GDP": "G", "GMP": "G", "ATP": "A", "ADP": "A", "CTP": "C", "UTP": "U"}
_DATE_KEYS = ("_pdbx_database_status.recvd_initial_deposition_date", "_database_PDB_rev.date_original")


def is_structure_file(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return path.is_file() and name.endswith(STRUCTURE_SUFFIXES)


def _load(path: Path) -> gemmi.Structure:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        st = gemmi.read_structure(str(path), merge_chain_parts=True)
    except (ValueError, RuntimeError) as err:
        raise InputError(f"{path}: does not parse as PDB/mmCIF ({str(err).splitlines()[0]})") from None
    if len(st) == 0 or not any(len(res) for ch in st[0] for res in ch):
        raise InputError(f"{path}: does not parse as PDB/mmCIF (no atom records in model 1)")
    st.setup_entities()
    st.assign_label_seq_id(False)
    return st


def _parent_letter(name: str, modres: dict[str, str]) -> str | None:
    """A/C/G/U(T) for a residue name, or None when it has no nucleotide parent."""
    for candidate in (name, modres.get(name, "")):
        if candidate in ("A", "C", "G", "U", "T", "DA", "DC", "DG", "DT", "DU"):
            return candidate[-1]
    if name in NUCLEOTIDE_PARENTS:
        return NUCLEOTIDE_PARENTS[name]
    info = gemmi.find_tabulated_residue(name)
    if info is not None and info.is_nucleic_acid() and info.one_letter_code.upper() in "ACGUT":
        return info.one_letter_code.upper()
    return None


def _chain_residues(st: gemmi.Structure, poly: gemmi.ResidueSpan) -> tuple[list[str], list[int]]:
    """Full residue names and each modelled residue's 0-based position in them."""
    entity = st.get_entity_of(poly)
    seqres = [gemmi.Entity.first_mon(m) for m in entity.full_sequence] if entity else []
    positions = [r.label_seq for r in poly]
    if seqres and all(p is not None and 1 <= p <= len(seqres) for p in positions):
        return seqres, [p - 1 for p in positions]
    return [r.name for r in poly], list(range(len(poly)))


def _chain_target(path: Path, st: gemmi.Structure, chain: gemmi.Chain, unknown: Enum | str) -> Target:
    poly = chain.get_polymer()
    names, positions = _chain_residues(st, poly)
    modres = {m.res_id.name: m.parent_comp_id for m in st.mod_residues if m.parent_comp_id}
    letters, notes = [], []
    for i, name in enumerate(names):
        letter = _parent_letter(name, modres)
        if letter is None:
            if enum_value(unknown) != "mask":
                raise TargetError(
                    f"{path}: chain {chain.name} residue {i + 1} ({name}) has no A/C/G/U parent",
                    reason="unknown nucleotide",
                )
            notes.append(f"residue {i + 1} ({name}) has no A/C/G/U parent: kept as N")
        letters.append(letter or "N")
    where = f"{path}: chain {chain.name}"
    sequence = normalize_sequence("".join(letters), unknown, where)
    coords = np.full((1, len(sequence), 3), np.nan, dtype=np.float32)
    for res, pos in zip(poly, positions, strict=True):
        atom = next((a for n in C1_NAMES if (a := res.find_atom(n, "*")) is not None), None)
        if atom is not None and np.isnan(coords[0, pos, 0]):
            coords[0, pos] = (atom.pos.x, atom.pos.y, atom.pos.z)
    info = dict(st.info)
    date = next((info[k] for k in _DATE_KEYS if info.get(k)), None)
    tid = f"{path.name.split('.')[0]}_{chain.name}"
    return Target(tid, sequence, coords, date, source=path.name, notes=notes)


def _rna_chains(st: gemmi.Structure) -> list[gemmi.Chain]:
    chains = []
    for chain in st[0]:
        poly = chain.get_polymer()
        entity = st.get_entity_of(poly) if len(poly) else None
        ptype = entity.polymer_type if entity and entity.polymer_type != gemmi.PolymerType.Unknown else None
        if len(poly) and (ptype or poly.check_polymer_type()) == gemmi.PolymerType.Rna:
            chains.append(chain)
    return chains


def _keep_one_per_sequence(targets: list[Target]) -> tuple[list[Target], list[Skip]]:
    """Of chains with one sequence, keep the one with fewest missing C1' (then the first chain)."""
    best: dict[str, Target] = {}
    for t in targets:
        cur = best.get(t.sequence)
        if cur is None or t.missing_fraction() < cur.missing_fraction():
            best[t.sequence] = t
    kept = [t for t in targets if best[t.sequence] is t]
    skips = [
        Skip(t.target_id, "duplicate chain", t.source, f"same sequence as {best[t.sequence].target_id}")
        for t in targets
        if best[t.sequence] is not t
    ]
    return kept, skips


def read_structure(
    path: str | Path, unknown: Enum | str = "mask", on_error: Enum | str = "skip"
) -> tuple[list[Target], list[Skip]]:
    """One target per distinct RNA chain of model 1 (``<file stem>_<chain>``), and the chains skipped."""
    path = Path(path)
    st = _load(path)
    chains = _rna_chains(st)
    if not chains:
        found = ", ".join(f"{ch.name} ({ch.get_polymer().check_polymer_type().name})" for ch in st[0]) or "none"
        raise InputError(f"{path}: no RNA chain in model 1 (chains: {found})")
    targets, skips = [], []
    for chain in chains:
        try:
            target = _chain_target(path, st, chain, unknown)
            if not target.coord_mask().any():
                raise TargetError(f"{path}: chain {chain.name}: all C1' atoms missing", reason="no C1' atoms")
            targets.append(target)
        except TargetError as err:
            if enum_value(on_error) == "raise":
                raise
            skips.append(Skip(f"{path.name.split('.')[0]}_{chain.name}", err.reason, str(path), str(err)))
    if not targets and all(s.reason == "no C1' atoms" for s in skips):
        raise InputError(f"{path}: all C1' atoms missing in every RNA chain ({', '.join(c.name for c in chains)})")
    kept, dup = _keep_one_per_sequence(targets)
    return kept, skips + dup


def structure_files(directory: str | Path) -> list[Path]:
    """Sorted PDB / mmCIF files (optionally .gz) directly in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of PDB/mmCIF files")
    files = sorted(p for p in directory.iterdir() if is_structure_file(p))
    if not files:
        raise InputError(f"{directory}: no PDB/mmCIF files ({', '.join(STRUCTURE_SUFFIXES)})")
    return files


def read_structure_dir(
    directory: str | Path, unknown: Enum | str = "mask", on_error: Enum | str = "skip"
) -> tuple[list[Target], list[Skip]]:
    """Targets of every structure file in ``directory``; a file that cannot be read at all raises."""
    targets, skips = [], []
    for path in structure_files(directory):
        t, s = read_structure(path, unknown, on_error)
        targets += t
        skips += s
    return targets, skips
