"""(op family: being written)"""
