"""S2S-ZEST textless emotion style transfer (METHODS.md section 6): analysis models (speaker, emotion, F0,
duration), the BigVGAN vocoder (``vocoder/``), the WORLD synthesiser backend (``world_synth``) and the pipeline.
"""
