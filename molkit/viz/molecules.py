"""Molecule drawings (RDKit), with optional per-atom highlights."""

from __future__ import annotations

from collections.abc import Sequence


def draw_molecules(
    smiles: Sequence[str],
    legends: Sequence[str] | None = None,
    per_row: int = 4,
    size: tuple[int, int] = (260, 200),
    highlight_atoms: Sequence[Sequence[int]] | None = None,
):
    """A grid image (PIL) of molecules with optional legends and highlighted atom lists."""
    from rdkit.Chem import Draw

    from molkit.chem import parse_smiles

    mols = [parse_smiles(s) for s in smiles]
    return Draw.MolsToGridImage(
        mols,
        molsPerRow=per_row,
        subImgSize=size,
        legends=list(legends) if legends is not None else None,
        highlightAtomLists=[list(a) for a in highlight_atoms]
        if highlight_atoms is not None
        else None,
        returnPNG=False,
    )


def draw_highlighted(
    smiles: str, atom_weights: Sequence[float], legend: str = "", size: tuple[int, int] = (360, 280)
):
    """One molecule with atoms coloured by signed weights (red positive, blue negative); returns a
    PIL image."""
    import io

    from PIL import Image
    from rdkit.Chem.Draw import rdMolDraw2D

    from molkit.chem import parse_smiles

    mol = parse_smiles(smiles)
    weights = list(atom_weights)
    if len(weights) != mol.GetNumAtoms():
        raise ValueError(f"{len(weights)} weights for {mol.GetNumAtoms()} atoms of {smiles}")
    scale = max((abs(w) for w in weights), default=0.0) or 1.0
    colours, radii = {}, {}
    for i, w in enumerate(weights):
        if w == 0:
            continue
        a = min(1.0, abs(w) / scale)
        colours[i] = (
            (1.0, 1.0 - 0.7 * a, 1.0 - 0.7 * a) if w > 0 else (1.0 - 0.7 * a, 1.0 - 0.7 * a, 1.0)
        )
        radii[i] = 0.3 + 0.2 * a
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    drawer.DrawMolecule(
        mol,
        highlightAtoms=list(colours),
        highlightAtomColors=colours,
        highlightAtomRadii=radii,
        highlightBonds=[],
        legend=legend,
    )
    drawer.FinishDrawing()
    return Image.open(io.BytesIO(drawer.GetDrawingText()))
