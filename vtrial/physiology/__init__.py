"""Mechanistic physiology: ECGSYN beats, pharmacokinetics, ion-channel block, the O'Hara–Rudy ventricular
cell and the block→ECG map.

Pure computation: nothing here imports the engine, storage or CLI.
"""
