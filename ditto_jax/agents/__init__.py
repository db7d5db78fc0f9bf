"""Imitation maths: latent-matching rewards, lambda-returns, actor-critic losses."""
