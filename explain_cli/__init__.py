"""explain_cli: perturbation explanations (LIME, Kernel SHAP, RISE, permutation, ablation) for PyTorch image models."""

__version__ = "0.1.0"
