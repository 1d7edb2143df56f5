"""Mechanistic physiology: ECGSYN beats, pharmacokinetics, ion-channel block and the block→ECG map.

Pure computation: nothing here imports the engine, storage or CLI.
"""
