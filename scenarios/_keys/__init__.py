"""Each scenario's lab-sheet key (lab.sheetkey.Key): how a run fills the named cells of its sheet's
fill-in tables, one module per scenario, named as the scenario module is."""
